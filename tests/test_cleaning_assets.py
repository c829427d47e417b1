"""The cleaning assets (``adjustment_factors``, ``cleaned_ohlcv``) end to end through real
Dagster runs: missing sessions, incremental sessions, splits and the point-in-time view.

Every run is ``dagster.materialize`` on a throwaway instance, with a temp data directory and
a folder of CSV files written here (gaps, splits and dividends at known sessions). A
partition range is one run, selected with the ``dagster/asset_partition_range_*`` tags.
Adjusted prices are not stored: ``load("cleaned_ohlcv")`` applies the events when reading.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterEventType

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.storage import TableStore
from assets.cleaning import adjustment_factors, cleaned_ohlcv
from assets.ingestion import raw_ohlcv, universe
from assets.quality import CHECK_NO_MISSING_SESSIONS, validated_and_quarantined_ohlcv
from assets.resources import MarketDataResource, StorageResource

import quality_support
from quality_support import materialized, md_rows

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.xdist_group("cleaning_assets"),
]

PIPELINE = [raw_ohlcv, validated_and_quarantined_ohlcv, adjustment_factors, cleaned_ohlcv]
TABLES = ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", "adjustment_factors", "cleaned_ohlcv")
DOWNSTREAM = ("adjustment_factors", "cleaned_ohlcv")
PRICES = ["open", "high", "low", "close"]
ADJ = ["adj_open", "adj_high", "adj_low", "adj_close"]
CSV_COLUMNS = ["symbol", "date", *PRICES, "volume", "dividend", "split_ratio"]

# 30 sessions materialised as one run, then NEW (the next session) on its own.
RANGE = ("2024-01-02", "2024-02-13")
NEW = "2024-02-14"
SESSIONS = sessions_between(RANGE[0], NEW)
KEYS = list(SESSIONS.strftime("%Y-%m-%d"))
assert KEYS[-1] == NEW and KEYS[-2] == RANGE[1]
PLAIN = [f"C{i:02d}" for i in range(16)]
# GAPA misses sessions 10 and 11; DIVG misses 11 and pays a dividend on 12 (right after its
# gap); DIVY pays dividends on 5 and 20; SPLT splits 2-for-1 on NEW.
SYMBOLS = [*PLAIN, "DIVG", "DIVY", "GAPA", "SPLT"]
GAPA_MISSING, DIVG_MISSING, DIVG_DIVIDEND, DIVY_DIVIDENDS = (10, 11), (11,), 12, (5, 20)


# -- the CSV market --------------------------------------------------------------------------
def make_market(symbols, sessions, seed=1) -> pd.DataFrame:
    return quality_support.make_market(symbols, sessions, seed, first_price=30.0, price_step=3.0)


def at(bars: pd.DataFrame, symbol: str, index: int) -> pd.Series:
    mask = (bars["symbol"] == symbol) & (bars["date"] == SESSIONS[index])
    assert mask.sum() == 1
    return mask


def drop_sessions(bars: pd.DataFrame, symbol: str, indices) -> pd.DataFrame:
    gone = (bars["symbol"] == symbol) & bars["date"].isin(SESSIONS[list(indices)])
    return bars[~gone].reset_index(drop=True)


def market(extra_gaps: dict[str, range] | None = None) -> pd.DataFrame:
    bars = make_market(SYMBOLS, SESSIONS)
    split = (bars["symbol"] == "SPLT") & (bars["date"] >= pd.Timestamp(NEW))
    bars.loc[split, PRICES] = (bars.loc[split, PRICES] / 2).round(2)
    bars.loc[split, "volume"] *= 2
    bars.loc[at(bars, "SPLT", len(KEYS) - 1), "split_ratio"] = 2.0
    for i in DIVY_DIVIDENDS:
        bars.loc[at(bars, "DIVY", i), "dividend"] = 0.6
    bars.loc[at(bars, "DIVG", DIVG_DIVIDEND), "dividend"] = 0.5
    bars = drop_sessions(bars, "GAPA", GAPA_MISSING)
    bars = drop_sessions(bars, "DIVG", DIVG_MISSING)
    for symbol, indices in (extra_gaps or {}).items():
        bars = drop_sessions(bars, symbol, indices)
    return bars


def write_folder(folder: Path, bars: pd.DataFrame) -> Path:
    folder.mkdir(parents=True)
    bars[CSV_COLUMNS].assign(date=bars["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / "bars.csv", index=False)
    return folder


def resources_for(data_dir: Path, folder: Path, symbols=SYMBOLS) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="csv", source_path=str(folder), universe=",".join(symbols)),
    }


# -- running and reading runs ----------------------------------------------------------------
def run(instance, resources, start: str, end: str | None = None, assets=PIPELINE) -> dg.ExecuteInProcessResult:
    """One run: a single partition (``end`` omitted) or a partition range as one run."""
    if end is None:
        return dg.materialize(assets, partition_key=start, resources=resources, instance=instance, raise_on_error=False)
    tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
    return dg.materialize(assets, tags=tags, resources=resources, instance=instance, raise_on_error=False)


def with_universe(instance, resources) -> dict:
    assert dg.materialize([universe], resources=resources, instance=instance).success
    return resources


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def snapshot(data_dir: Path) -> dict[str, tuple[int, str]]:
    """Every table file with its mtime (ns) and content digest."""
    out = {}
    for table in TABLES:
        for path in sorted((Path(data_dir) / table).glob("*.parquet")):
            out[f"{table}/{path.name}"] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def symbol_rows(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return frame[frame["symbol"] == symbol].sort_values("date").reset_index(drop=True)


# -- fixtures --------------------------------------------------------------------------------
@dataclass
class Pipeline:
    folder: Path
    data: Path
    resources: dict
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def backfill(tmp_path_factory, module_instance) -> Pipeline:
    """The 30-session range, one run, from raw through cleaning."""
    root = tmp_path_factory.mktemp("backfill")
    folder = write_folder(root / "csv", market())
    resources = with_universe(module_instance, resources_for(root / "data", folder))
    return Pipeline(folder, root / "data", resources, run(module_instance, resources, *RANGE))


@dataclass
class Increment:
    before_files: dict
    after_files: dict
    before: pd.DataFrame  # load("cleaned_ohlcv") before NEW
    after: pd.DataFrame  # and after
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def increment(backfill, module_instance) -> Increment:
    """After the backfill, the next session (NEW) alone, as the nightly run would do it."""
    before_files, before = snapshot(backfill.data), load("cleaned_ohlcv", data_dir=backfill.data)
    result = run(module_instance, backfill.resources, NEW)
    return Increment(before_files, snapshot(backfill.data), before, load("cleaned_ohlcv", data_dir=backfill.data), result)


# -- 4. missing sessions -----------------------------------------------------------------------
def test_short_gaps_warn_without_blocking_and_are_forward_filled(backfill):
    result = backfill.result
    assert result.success
    gaps = checks_of(result)[CHECK_NO_MISSING_SESSIONS]
    assert not gaps.passed
    assert gaps.severity == dg.AssetCheckSeverity.WARN
    assert gaps.metadata["missing_symbol_sessions"].value == len(GAPA_MISSING) + len(DIVG_MISSING)
    table = md_rows(gaps.metadata["failures"].md_str)
    assert {(r["symbol"], r["first_missing"][:10], r["last_missing"][:10], r["sessions"]) for r in table} == {
        ("GAPA", KEYS[10], KEYS[11], "2"), ("DIVG", KEYS[11], KEYS[11], "1")}
    # Not blocking: everything downstream ran for every session.
    range_keys = set(KEYS[:-1])
    done = materialized(result)
    assert done["adjustment_factors"] == done["cleaned_ohlcv"] == range_keys

    cleaned = load("cleaned_ohlcv", end=RANGE[1], data_dir=backfill.data)
    validated = load("validated_ohlcv", data_dir=backfill.data)
    assert len(cleaned) == len(SYMBOLS) * len(range_keys), "one cleaned row per symbol and session"
    filled = cleaned[cleaned["filled"]]
    assert set(zip(filled["symbol"], filled["date"].dt.strftime("%Y-%m-%d"))) == {
        ("GAPA", KEYS[10]), ("GAPA", KEYS[11]), ("DIVG", KEYS[11])}
    assert (filled["flags"] == "ffill").all() and (filled["volume"] == 0).all()
    assert (filled["dividend"] == 0).all() and (filled["split_ratio"] == 1).all()
    last_close = symbol_rows(validated, "GAPA").set_index("date").loc[SESSIONS[9], "close"]
    for column in PRICES:  # a flat bar at the last close before the gap
        assert (filled.loc[filled["symbol"] == "GAPA", column] == last_close).all(), column
    real = cleaned[~cleaned["filled"]]
    assert not real["flags"].str.contains("ffill").any()
    merged = real.merge(validated, on=["symbol", "date"], how="outer", suffixes=("", "_validated"), indicator=True)
    assert (merged["_merge"] == "both").all(), "the traded rows are exactly the validated rows"
    for column in (*PRICES, "volume", "dividend", "split_ratio", "source", "flags"):
        np.testing.assert_array_equal(merged[column].to_numpy(), merged[f"{column}_validated"].to_numpy(), column)
    meta = result.asset_materializations_for_node("cleaned_ohlcv")[0].metadata
    assert meta["filled_gaps"].value == 2 and meta["unfilled_gaps"].value == 0
    per_session = {m.partition: m.metadata for m in result.asset_materializations_for_node("cleaned_ohlcv")}
    assert per_session[KEYS[11]]["filled_rows"].value == 2 and per_session[KEYS[10]]["filled_rows"].value == 1


def test_a_gap_longer_than_the_fill_limit_is_an_error_that_blocks_cleaning(tmp_path, module_instance):
    root = tmp_path
    bars = market(extra_gaps={"C03": range(8, 14)})  # six sessions in a row
    assert len(bars) == len(SYMBOLS) * len(KEYS) - 3 - 6
    resources = with_universe(module_instance, resources_for(root / "data", write_folder(root / "csv", bars)))
    result = run(module_instance, resources, KEYS[0], KEYS[19])

    gaps = checks_of(result)[CHECK_NO_MISSING_SESSIONS]
    assert not gaps.passed and gaps.severity == dg.AssetCheckSeverity.ERROR
    assert "1 longer than 3" in gaps.metadata["summary"].value
    rows = {r["symbol"]: r for r in md_rows(gaps.metadata["failures"].md_str)}
    assert rows["C03"]["sessions"] == "6" and rows["C03"]["first_missing"].startswith(KEYS[8])
    assert rows["GAPA"]["sessions"] == "2"
    assert not result.success
    assert result.get_failed_step_keys() == {"validated_and_quarantined_ohlcv"}
    assert not set(DOWNSTREAM) & set(materialized(result))
    started = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
    assert not set(DOWNSTREAM) & started
    assert not (root / "data" / "cleaned_ohlcv").exists() and not (root / "data" / "adjustment_factors").exists()


# -- 6. a new session is incremental -------------------------------------------------------------
@pytest.mark.slow
def test_a_new_session_writes_only_its_own_files(increment):
    assert increment.result.success
    assert all(parts == {NEW} for parts in materialized(increment.result).values())
    before, after = increment.before_files, increment.after_files
    assert set(after) - set(before) == {f"{t}/{NEW}.parquet" for t in TABLES}
    assert not set(before) - set(after)
    touched = sorted(name for name in before if after[name] != before[name])
    assert not touched, f"files of earlier sessions were rewritten: {touched}"


@pytest.mark.slow
def test_a_split_in_the_new_session_rebases_that_symbols_history_only(backfill, increment):
    events = load("adjustment_factors", start=NEW, end=NEW, data_dir=backfill.data)
    assert events["symbol"].tolist() == ["SPLT"]
    assert events["split_ratio"].tolist() == [2.0] and events["split_factor"].tolist() == [0.5]
    meta = increment.result.asset_materializations_for_node("adjustment_factors")[0].metadata
    assert meta["symbols_rebased"].value == "SPLT" and meta["splits"].value == 1

    before, after = increment.before, increment.after
    assert after["date"].max() == pd.Timestamp(NEW) and before["date"].max() == pd.Timestamp(RANGE[1])
    # SPLT: every earlier price halves (close / ratio) and volumes double; the new row is as traded.
    splt = symbol_rows(after, "SPLT")
    old = splt["date"] < pd.Timestamp(NEW)
    assert old.sum() == len(KEYS) - 1
    for raw, adj in zip(PRICES, ADJ):
        np.testing.assert_allclose(splt.loc[old, adj], splt.loc[old, raw] / 2.0, rtol=1e-12)
        np.testing.assert_array_equal(splt.loc[~old, adj], splt.loc[~old, raw])
    np.testing.assert_allclose(splt.loc[old, "adj_volume"], splt.loc[old, "volume"] * 2.0)
    np.testing.assert_array_equal(symbol_rows(before, "SPLT")[ADJ].to_numpy(), symbol_rows(before, "SPLT")[PRICES].to_numpy())

    # Every other symbol keeps its adjusted history exactly: DIVY's dividend factors, the rest raw.
    kept = after[(after["symbol"] != "SPLT") & (after["date"] <= pd.Timestamp(RANGE[1]))]
    pd.testing.assert_frame_equal(kept.sort_values(["symbol", "date"]).reset_index(drop=True),
                                  before[before["symbol"] != "SPLT"].sort_values(["symbol", "date"]).reset_index(drop=True))
    divy = symbol_rows(after, "DIVY")
    factors = load("adjustment_factors", symbols="DIVY", data_dir=backfill.data).sort_values("date")
    assert factors["date"].tolist() == [SESSIONS[i] for i in DIVY_DIVIDENDS]
    first, second = factors["dividend_factor"].tolist()
    assert 0.95 < first < 1 and 0.95 < second < 1
    expected = np.select([divy["date"] < SESSIONS[DIVY_DIVIDENDS[0]], divy["date"] < SESSIONS[DIVY_DIVIDENDS[1]]],
                         [first * second, second], default=1.0)
    np.testing.assert_allclose(divy["adj_close"], divy["close"] * expected, rtol=1e-12)
    for symbol in PLAIN:
        rows = symbol_rows(after, symbol)
        np.testing.assert_array_equal(rows[ADJ].to_numpy(), rows[PRICES].to_numpy(), err_msg=symbol)


# -- 8. point in time ----------------------------------------------------------------------------
@pytest.mark.slow
def test_as_of_before_the_split_gives_the_unadjusted_history(backfill, increment):
    view = load("cleaned_ohlcv", as_of=RANGE[1], data_dir=backfill.data)
    assert view["date"].max() == pd.Timestamp(RANGE[1]), "nothing after as_of is visible"
    splt = symbol_rows(view, "SPLT")
    np.testing.assert_array_equal(splt[ADJ].to_numpy(), splt[PRICES].to_numpy())
    np.testing.assert_array_equal(splt["adj_volume"].to_numpy(), splt["volume"].to_numpy(dtype=float))
    # The view as of the day before the split is exactly what load() gave before NEW existed.
    pd.testing.assert_frame_equal(view.sort_values(["symbol", "date"]).reset_index(drop=True),
                                  increment.before.sort_values(["symbol", "date"]).reset_index(drop=True))
    # As of a date between DIVY's dividends only the first one adjusts history.
    mid = load("cleaned_ohlcv", symbols="DIVY", as_of=KEYS[DIVY_DIVIDENDS[1] - 1], data_dir=backfill.data)
    first = load("adjustment_factors", symbols="DIVY", data_dir=backfill.data).sort_values("date")["dividend_factor"].iloc[0]
    expected = np.where(mid["date"] < SESSIONS[DIVY_DIVIDENDS[0]], first, 1.0)
    np.testing.assert_allclose(mid["adj_close"], mid["close"] * expected, rtol=1e-12)
    # And as of NEW (the default, latest session) SPLT is rebased.
    latest = symbol_rows(load("cleaned_ohlcv", symbols="SPLT", as_of=NEW, data_dir=backfill.data), "SPLT")
    np.testing.assert_allclose(latest["adj_close"].iloc[:-1], latest["close"].iloc[:-1] / 2.0, rtol=1e-12)


def test_load_a_symbol_without_corporate_actions(backfill):
    rows = load("cleaned_ohlcv", symbols="C00", end=RANGE[1], data_dir=backfill.data)
    assert len(rows) == len(KEYS) - 1
    np.testing.assert_array_equal(rows[ADJ].to_numpy(), rows[PRICES].to_numpy())


def test_load_as_of_before_any_event_is_the_raw_history(backfill):
    view = load("cleaned_ohlcv", as_of=KEYS[2], data_dir=backfill.data)
    assert view["date"].max() == pd.Timestamp(KEYS[2]) and len(view) == 3 * len(SYMBOLS)
    np.testing.assert_array_equal(view[ADJ].to_numpy(), view[PRICES].to_numpy())


# -- range independence of cleaning ---------------------------------------------------------------


@pytest.fixture(scope="module")
def day_by_day(backfill, module_instance, tmp_path_factory) -> Path:
    """The same market, but sessions 10, 11 and 12 arrive one run each (as a nightly job would)."""
    data = tmp_path_factory.mktemp("daily") / "data"
    resources = with_universe(module_instance, resources_for(data, backfill.folder))
    assert run(module_instance, resources, KEYS[0], KEYS[9]).success
    for key in KEYS[10:13]:
        assert run(module_instance, resources, key).success
    return data


@pytest.mark.slow
def test_gaps_are_filled_whether_sessions_arrive_in_one_run_or_one_per_run(backfill, day_by_day):
    daily, ranged = (TableStore(d).read_partitions("cleaned_ohlcv", end=KEYS[12], symbols=["GAPA"])
                     for d in (day_by_day, backfill.data))
    assert ranged["filled"].sum() == 2
    pd.testing.assert_frame_equal(daily, ranged)


@pytest.mark.slow
def test_a_dividend_after_a_gap_gets_the_same_factor_in_a_daily_run(backfill, day_by_day):
    daily = load("adjustment_factors", symbols="DIVG", data_dir=day_by_day)
    ranged = load("adjustment_factors", symbols="DIVG", data_dir=backfill.data)
    assert ranged["flag"].isna().all() and ranged["dividend_factor"].iloc[0] < 1
    pd.testing.assert_frame_equal(daily, ranged)
