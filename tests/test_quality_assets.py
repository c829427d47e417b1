"""The quality assets (``validated_ohlcv`` + ``quarantined_ohlcv`` and their blocking checks)
end to end through real Dagster runs, on a CSV market with one planted defect per session:
every raw row is validated or quarantined, and the partitions do not depend on how a range was
split into runs.

Every run is ``dagster.materialize`` on a throwaway instance with the resources built
explicitly: a temp data directory and a folder of CSV files written here (tests/quality_support.py),
with defects planted at known rows. A partition range is one run (the single-run backfill
policy), selected with the ``dagster/asset_partition_range_*`` tags. The expensive runs are
module-scoped and shared by the tests that only read them. The checks on clean synthetic data
are in test_quality_checks_synthetic.py, the ``sources_agree`` reconciliation check in
test_sources_agree.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.quality import rule_catalogue
from assets.quality import CHECK_GX_SUITE, CHECK_NO_ERROR_ROWS, CHECK_PASS_RATE, CHECK_SCHEMA
from assets.resources import StorageResource

from quality_support import (
    KEYS,
    PIPELINE,
    PRICES,
    QUARANTINED_KEY,
    RANGE,
    SESSIONS,
    SYMBOLS,
    TABLES,
    VALIDATED_KEY,
    base_market,
    checks_of,
    copy_data,
    csv_resources,
    day,
    digests,
    explain,
    keyset,
    materialized,
    md_rows,
    row,
    run,
    with_universe,
    write_folder,
    write_universe,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    # The module-scoped runs are built once: keep this module's tests on one xdist worker.
    pytest.mark.xdist_group("quality_assets"),
]


# -- the planted market: one defect per session, each a different ERROR rule -------------------
def _swap_high_low(bars, mask):
    bars.loc[mask, ["high", "low"]] = bars.loc[mask, ["low", "high"]].to_numpy()


def _set(column, value_of):
    def defect(bars, mask):
        bars.loc[mask, column] = value_of(bars.loc[mask].iloc[0])
    return defect


def _times_ten(bars, mask):
    """An unexplained 10x print of the whole bar: only the lookback rule can catch it."""
    bars.loc[mask, PRICES] = bars.loc[mask, PRICES] * 10


PLANTED = (  # (session index, symbol, rule id expected among the row's rule ids, defect)
    (3, "S01", "ohlc.low_above_high", _swap_high_low),
    (5, "S02", "price.non_positive", _set("close", lambda r: -r.close)),
    (8, "S03", "volume.negative", _set("volume", lambda r: -r.volume)),
    (10, "S04", "dividend.not_below_prev_close", _set("dividend", lambda r: 2 * r.close)),
    (12, "S05", "split.non_positive", _set("split_ratio", lambda r: 0.0)),
    (14, "S06", "price.missing", _set("close", lambda r: np.nan)),
    (16, "S08", "split.out_of_bounds", _set("split_ratio", lambda r: 100.0)),
    (50, "S07", "return.extreme_outlier", _times_ten),
    (59, "S09", "ohlc.low_above_high", _swap_high_low),
)


@dataclass
class Market:
    root: Path
    folder: Path
    universe: Path
    data: Path
    resources: dict
    result: dg.ExecuteInProcessResult
    planted: dict[tuple[str, str], str]  # (symbol, session key) -> expected rule id

    @property
    def rejected(self) -> set[tuple[str, str]]:
        """Planted rows whose bar is rejected; the others only carry a bad corporate action, so
        the bar stays validated (flagged) and only its event is quarantined."""
        events = {rule.id for rule in rule_catalogue() if rule.scope == "event"}
        return {key for key, rule_id in self.planted.items() if rule_id not in events}


@pytest.fixture(scope="module")
def planted(tmp_path_factory, module_instance) -> Market:
    """The 61-session range with the PLANTED defects, materialised through cleaning in one run."""
    root = tmp_path_factory.mktemp("planted")
    bars = base_market()
    expected = {}
    for index, symbol, rule_id, defect in PLANTED:
        defect(bars, row(bars, symbol, SESSIONS[index]))
        expected[(symbol, KEYS[index])] = rule_id
    folder = write_folder(root / "csv", bars)
    uni = write_universe(root / "universe.csv", SYMBOLS)
    data = root / "data"
    resources = with_universe(module_instance, csv_resources(data, folder, uni))
    result = run(module_instance, resources, PIPELINE, *RANGE)
    return Market(root, folder, uni, data, resources, result, expected)


# -- 1. every raw row is validated or quarantined ----------------------------------------------
@pytest.mark.slow
def test_each_partition_splits_raw_rows_into_validated_and_quarantined(planted):
    data = planted.data
    assert sorted(p.stem for p in (data / "validated_ohlcv").glob("*.parquet")) == KEYS
    assert sorted(p.stem for p in (data / "quarantined_ohlcv").glob("*.parquet")) == KEYS
    mats = {(m.asset_key, m.partition): m.metadata
            for m in planted.result.asset_materializations_for_node("validated_and_quarantined_ohlcv")}
    all_quarantined = []
    for key in KEYS:
        raw, good, bad = (day(t, key, data) for t in ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv"))
        assert len(raw) == len(SYMBOLS), key
        rejected = bad[bad["action"] == "rejected"]
        assert len(raw) == len(good) + len(rejected), key
        assert keyset(good) | keyset(rejected) == keyset(raw) and not keyset(good) & keyset(rejected), key
        assert keyset(good) & keyset(bad) == keyset(bad[bad["action"] == "event_quarantined"]), key
        assert set(bad["partition"]) <= {key}
        meta = mats[(VALIDATED_KEY, key)]
        assert (meta["rows_in"].value, meta["rows"].value) == (len(raw), len(good)), key
        assert meta["dagster/row_count"].value == len(good)
        assert mats[(QUARANTINED_KEY, key)]["rows"].value == len(bad), key
        all_quarantined.append(bad)
    quarantined = pd.concat(all_quarantined, ignore_index=True)

    # Exactly the planted rows are quarantined, each with the rule it was planted for.
    assert keyset(quarantined) == set(planted.planted)
    for rec in quarantined.itertuples():
        expected = planted.planted[(rec.symbol, rec.date)]
        assert expected in rec.rule_id.split(","), (rec.symbol, rec.date, rec.rule_id)
        assert rec.severity == "ERROR" and rec.rule_description and rec.offending_value
    outlier = quarantined[quarantined["symbol"] == "S07"].iloc[0]
    move = re.search(r"vs previous close=[\d.]+ \(\+(\d+)%, (\d+) MADs\)", outlier["offending_value"])
    assert outlier["rule_id"] == "return.extreme_outlier" and move, outlier["offending_value"]
    assert 800 < int(move.group(1)) < 1100 and int(move.group(2)) > 30

    assert set(keyset(quarantined[quarantined["action"] == "rejected"])) == planted.rejected

    # Nothing good was lost or altered: every other raw row is validated with its values as sent.
    raw = load("raw_ohlcv", data_dir=data)
    validated = load("validated_ohlcv", data_dir=data)
    bad_row = [key in planted.planted for key in zip(raw["symbol"].astype(str), raw["date"].dt.strftime("%Y-%m-%d"))]
    good = raw[~np.array(bad_row)]
    validated = validated[[key not in planted.planted for key in zip(
        validated["symbol"].astype(str), validated["date"].dt.strftime("%Y-%m-%d"))]]
    merged = good.merge(validated, on=["symbol", "date"], how="outer", suffixes=("_raw", ""), indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == len(good) == len(validated)
    for column in (*PRICES, "volume", "dividend", "split_ratio"):
        np.testing.assert_array_equal(merged[f"{column}_raw"].to_numpy(), merged[column].to_numpy(), err_msg=column)
    kept = load("validated_ohlcv", data_dir=data).set_index(["symbol", "date"])["split_ratio"]
    assert kept[("S05", SESSIONS[12])] == kept[("S08", SESSIONS[16])] == 1.0
    # The split and the dividends are good rows: validated, and their events built downstream.
    # The dividend twice the close is kept as sent and listed with a flag and a neutral factor;
    # the zero and the 100:1 split ratios were removed from their validated rows.
    events = load("adjustment_factors", data_dir=data)
    assert keyset(events) == {("S90", KEYS[20]), ("S91", KEYS[10]), ("S91", KEYS[45]), ("S04", KEYS[10])}
    neutral = events[events["symbol"] == "S04"]
    assert neutral["flag"].tolist() == ["dividend_ge_prev_close"] and neutral["dividend_factor"].tolist() == [1.0]

    # The quarantine's run-level table names every planted row.
    rejected = md_rows(mats[(QUARANTINED_KEY, KEYS[0])]["rejected"].md_str)
    assert {(r["symbol"], r["partition"]) for r in rejected} == set(planted.planted)


@pytest.mark.slow
def test_one_bad_row_in_a_hundred_passes_the_gate_and_does_not_block(planted):
    checks = checks_of(planted.result)
    rate = checks[CHECK_PASS_RATE]
    assert rate.passed, rate.description
    assert rate.metadata["lowest_pass_rate"].value == 0.99 and rate.metadata["held_sessions"].value == []
    assert checks[CHECK_SCHEMA].passed and checks[CHECK_NO_ERROR_ROWS].passed and checks[CHECK_GX_SUITE].passed
    assert planted.result.success
    done = materialized(planted.result)
    assert done["adjustment_factors"] == done["cleaned_ohlcv"] == set(KEYS)
    # A quarantined row is a hole in the validated series: the cleaner bridges it with a
    # flagged flat bar, so every symbol still has one cleaned row per session.
    cleaned = load("cleaned_ohlcv", data_dir=planted.data)
    assert len(cleaned) == len(SYMBOLS) * len(KEYS)
    assert keyset(cleaned[cleaned["filled"]]) == planted.rejected
    assert (cleaned.loc[cleaned["filled"], "flags"] == "ffill").all()


# -- 2. the session gate: see test_quality_gate_assets.py (a held session, re-run and release) ----


# -- 5. idempotency and range independence ------------------------------------------------------


@pytest.mark.slow
def test_rematerialising_the_range_rewrites_identical_bytes(planted, module_instance, tmp_path):
    data = copy_data(planted.data, tmp_path / "data")
    before = digests(data)
    assert before == digests(planted.data)
    assert {t.split("/")[0] for t in before} == set(TABLES)
    assert sum(t.startswith("cleaned_ohlcv/") for t in before) == len(KEYS)
    again = run(module_instance, {**planted.resources, "storage": StorageResource(data_dir=str(data))}, PIPELINE, *RANGE)
    assert again.success
    assert digests(data) == before


@pytest.mark.slow
def test_raw_row_points_into_the_raw_partition_file(planted):
    """`raw_row` of a validated or quarantined row is that row's position in its raw partition."""
    for key in (KEYS[0], KEYS[5], KEYS[-1]):
        raw = pq.read_table(planted.data / "raw_ohlcv" / f"{key}.parquet").to_pandas()
        good, bad = day("validated_ohlcv", key, planted.data), day("quarantined_ohlcv", key, planted.data)
        positions = sorted([*good["raw_row"], *bad["raw_row"]])
        assert positions == list(range(len(raw))), f"{key}: raw_row runs {positions[0]}..{positions[-1]}"
        assert (raw["symbol"].iloc[good["raw_row"]].to_numpy() == good["symbol"].to_numpy()).all()


@pytest.fixture(scope="module")
def split_runs(planted, module_instance, tmp_path_factory) -> Path:
    """The planted range again in a fresh data directory: sessions 0..58 as one run, then 59
    (S09 quarantined) and 60 one partition at a time, as a daily schedule would."""
    data = tmp_path_factory.mktemp("split") / "data"
    resources = with_universe(module_instance, csv_resources(data, planted.folder, planted.universe))
    assert run(module_instance, resources, PIPELINE, KEYS[0], KEYS[-3]).success
    for key in KEYS[-2:]:
        single = run(module_instance, resources, PIPELINE, key)
        assert single.success
        assert all(parts == {key} for parts in materialized(single).values())
    return data


@pytest.mark.slow
def test_single_partition_runs_write_the_same_bytes_as_the_range_run(planted, split_runs):
    expected, got = digests(planted.data), digests(split_runs)
    assert got.keys() == expected.keys()
    differ = sorted(name for name in got if got[name] != expected[name])
    assert not differ, "files that depend on how the range was split into runs:\n" + explain(
        planted.data, split_runs, differ)


@pytest.mark.slow
def test_raw_and_events_do_not_depend_on_run_boundaries(planted, split_runs):
    expected, got = digests(planted.data), digests(split_runs)
    for table in ("raw_ohlcv", "adjustment_factors"):
        mine = {k: v for k, v in got.items() if k.startswith(table + "/")}
        assert mine == {k: v for k, v in expected.items() if k.startswith(table + "/")}, table
    # Apart from `raw_row`, everything before the last two sessions matches too.
    for key in KEYS[:-2]:
        for table in ("validated_ohlcv", "quarantined_ohlcv", "cleaned_ohlcv"):
            name = f"{table}/{key}.parquet"
            a, b = (pq.read_table(d / name).drop_columns(["raw_row"] if table != "cleaned_ohlcv" else [])
                    for d in (planted.data, split_runs))
            assert a.equals(b), name


@pytest.mark.slow
def test_validation_flags_do_not_depend_on_run_boundaries(planted, split_runs):
    """S09 was quarantined on session 59; whether 60 is validated with 59 or after it, the
    flags of session 60 are the same (the row of 59 was delivered: no session is missing)."""
    a, b = day("validated_ohlcv", KEYS[-1], planted.data), day("validated_ohlcv", KEYS[-1], split_runs)
    assert a.loc[a["symbol"] == "S09", "flags"].tolist() == [""]
    pd.testing.assert_series_equal(a["flags"], b["flags"])


@pytest.mark.slow
def test_rerunning_one_partition_inside_the_range_keeps_its_bytes(planted, module_instance, tmp_path):
    """Re-running session 30, and session 59 (S09's quarantined row, bridged by a fill in the
    range run), in place must not change any file."""
    data = copy_data(planted.data, tmp_path / "data")
    resources = {**planted.resources, "storage": StorageResource(data_dir=str(data))}
    before = digests(data)
    for key in (KEYS[30], KEYS[-2]):
        assert run(module_instance, resources, PIPELINE, key).success
    after = digests(data)
    differ = sorted(name for name in after if after[name] != before[name])
    assert not differ, "a one-partition re-run changed:\n" + explain(planted.data, data, differ)

