"""The session gate end to end: one bad session of a single-run range is held back from cleaning
while the others flow, reported by ``pass_rate_above_threshold``, and re-runnable.

A 20-symbol CSV market (a watchlist-sized universe) over 12 sessions, run with
``dagster.materialize`` on a throwaway instance: session 6 has 6 of its 20 rows broken (more
than chance explains, so it is held), session 3 has one (an ordinary bad row: quarantined and
bridged by the cleaner, the session flows).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.quality.gate import allowed_defects
from assets.cleaning import adjustment_factors, cleaned_ohlcv
from assets.features import features
from assets.ingestion import raw_ohlcv, universe
from assets.quality import CHECK_PASS_RATE, validated_and_quarantined_ohlcv
from assets.resources import DaskResource, MarketDataResource, StorageResource

pytestmark = [pytest.mark.filterwarnings("ignore::dagster.BetaWarning"), pytest.mark.xdist_group("gate_assets")]

PIPELINE = [raw_ohlcv, validated_and_quarantined_ohlcv, adjustment_factors, cleaned_ohlcv]
DOWNSTREAM = [validated_and_quarantined_ohlcv, adjustment_factors, cleaned_ohlcv]
SESSIONS = sessions_between("2024-01-02", "2024-01-18")
KEYS = list(SESSIONS.strftime("%Y-%m-%d"))
SYMBOLS = [f"W{i:02d}" for i in range(20)]
HELD_KEY, ONE_BAD_KEY, AFTER_KEY = KEYS[6], KEYS[3], KEYS[7]
BROKEN = SYMBOLS[:6]  # their rows of HELD_KEY get low > high
ABSENT = "W19"  # sends no bar for AFTER_KEY: the cleaner fills it from the last *trusted* bar
PRICES = ["open", "high", "low", "close"]
TABLES = ("validated_ohlcv", "quarantined_ohlcv", "quality_gate", "adjustment_factors", "cleaned_ohlcv")


def market(broken: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    for i, symbol in enumerate(SYMBOLS):
        close = (30.0 + i) * np.exp(np.cumsum(rng.normal(0, 0.01, len(SESSIONS))))
        frames.append(pd.DataFrame({
            "symbol": symbol, "date": SESSIONS, "open": close.round(2), "high": (close * 1.01).round(2),
            "low": (close * 0.99).round(2), "close": close.round(2), "volume": 1_000_000, "dividend": 0.0,
            "split_ratio": 1.0}))
    bars = pd.concat(frames, ignore_index=True)
    bars.loc[(bars["symbol"] == "W10") & (bars["date"] == ONE_BAD_KEY), "volume"] = -5
    if broken:
        rows = bars["symbol"].isin(BROKEN) & (bars["date"] == HELD_KEY)
        bars.loc[rows, ["high", "low"]] = bars.loc[rows, ["low", "high"]].to_numpy()
    return bars[~((bars["symbol"] == ABSENT) & (bars["date"] == AFTER_KEY))]


def write_csv(folder: Path, bars: pd.DataFrame) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / "bars.csv", index=False)


@pytest.fixture
def setup(tmp_path):
    write_csv(tmp_path / "csv", market())
    pd.DataFrame({"Symbol": SYMBOLS, "Sector": "Test"}).to_csv(tmp_path / "universe.csv", index=False)
    resources = {"storage": StorageResource(data_dir=str(tmp_path / "data")),
                 "market_data": MarketDataResource(source="csv", source_path=str(tmp_path / "csv"),
                                                   universe=str(tmp_path / "universe.csv")),
                 "dask": DaskResource()}  # no scheduler: the features are computed in process
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([universe], resources=resources, instance=instance).success
        yield tmp_path, instance, resources


def run_range(instance, resources, assets=PIPELINE, **kwargs):
    tags = {"dagster/asset_partition_range_start": KEYS[0], "dagster/asset_partition_range_end": KEYS[-1]}
    return dg.materialize(assets, tags=tags, resources=resources, instance=instance, raise_on_error=False, **kwargs)


def gate_check(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_PASS_RATE]
    return evaluation


def partition_meta(result, node: str, asset: str | None = None) -> dict:
    return {m.partition: m.metadata for m in result.asset_materializations_for_node(node)
            if asset is None or m.asset_key.to_user_string() == asset}


def digests(data: Path) -> dict[str, str]:
    return {f"{t}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for t in TABLES for p in sorted((data / t).glob("*.parquet"))}


def test_a_bad_session_is_held_back_while_the_others_flow_and_a_second_run_writes_the_same(setup):
    root, instance, resources = setup
    data = root / "data"
    assert 1 <= int(allowed_defects(len(SYMBOLS))[0]) < len(BROKEN), "the planted session must exceed the gate"
    first = run_range(instance, resources)
    assert first.success, "a held session does not fail the run"

    check = gate_check(first)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and not check.blocking
    assert check.metadata["held_sessions"].value == [HELD_KEY]
    assert "1 session(s) held back" in check.description
    help_text = check.metadata["how_to_rerun"].md_str
    assert HELD_KEY in help_text and "release_sessions" in help_text
    validated_meta = partition_meta(first, "validated_and_quarantined_ohlcv", "validated_ohlcv")
    assert {k for k, m in validated_meta.items() if m["gate"].value == "held"} == {HELD_KEY}
    assert validated_meta[ONE_BAD_KEY]["gate"].value == "passed"

    # Every partition of the range is recorded downstream; the held one is marked and empty.
    cleaned_meta = partition_meta(first, "cleaned_ohlcv")
    assert set(cleaned_meta) == set(KEYS)
    assert {k for k, m in cleaned_meta.items() if m["held"].value} == {HELD_KEY}
    assert {k for k, m in partition_meta(first, "adjustment_factors").items() if m["held"].value} == {HELD_KEY}
    cleaned = load("cleaned_ohlcv", data_dir=data)
    by_day = cleaned.groupby(cleaned["date"].dt.strftime("%Y-%m-%d")).size()
    assert HELD_KEY not in by_day.index and (data / "cleaned_ohlcv" / f"{HELD_KEY}.parquet").is_file()
    assert set(by_day.index) == set(KEYS) - {HELD_KEY} and (by_day == len(SYMBOLS)).all()
    # The one bad row of an ordinary session is bridged as usual ...
    filled = cleaned[cleaned["filled"]]
    assert set(zip(filled["symbol"], filled["date"].dt.strftime("%Y-%m-%d"))) == {("W10", ONE_BAD_KEY), (ABSENT, AFTER_KEY)}
    # ... and the fill after the held session comes from the last trusted bar, not the held one.
    raw = load("raw_ohlcv", data_dir=data)
    before_hold = raw[(raw["symbol"] == ABSENT) & (raw["date"] == KEYS[5])]["close"].item()
    in_hold = raw[(raw["symbol"] == ABSENT) & (raw["date"] == HELD_KEY)]["close"].item()
    assert before_hold != in_hold
    assert filled[filled["symbol"] == ABSENT][PRICES].to_numpy().tolist() == [[before_hold] * 4]
    # Validation itself kept every row of the held session: nothing is lost, only not published.
    assert len(load("validated_ohlcv", start=HELD_KEY, end=HELD_KEY, data_dir=data)) == len(SYMBOLS) - len(BROKEN)

    # Features read cleaned bars: the held session gets none, and is marked.
    built = run_range(instance, resources, assets=[features])
    assert built.success
    feature_meta = partition_meta(built, "features")
    assert {k for k, m in feature_meta.items() if m["held"].value} == {HELD_KEY}
    assert feature_meta[HELD_KEY]["rows"].value == 0 and feature_meta[AFTER_KEY]["rows"].value == len(SYMBOLS)

    before = digests(data)
    second = run_range(instance, resources)
    assert second.success and gate_check(second).metadata["held_sessions"].value == [HELD_KEY]
    assert digests(data) == before


def test_a_held_session_flows_once_the_raw_data_is_fixed_and_the_range_re_run(setup):
    root, instance, resources = setup
    assert run_range(instance, resources).success
    write_csv(root / "csv", market(broken=False))
    again = run_range(instance, resources)
    assert again.success and gate_check(again).passed and gate_check(again).metadata["held_sessions"].value == []
    cleaned = load("cleaned_ohlcv", start=HELD_KEY, end=HELD_KEY, data_dir=root / "data")
    assert len(cleaned) == len(SYMBOLS) and not cleaned["filled"].any()


def test_a_held_session_is_released_by_config_for_that_partition_only(setup):
    root, instance, resources = setup
    assert run_range(instance, resources).success
    config = {"ops": {"validated_and_quarantined_ohlcv": {"config": {"release_sessions": [HELD_KEY]}}}}
    released = dg.materialize(DOWNSTREAM, partition_key=HELD_KEY, resources=resources, instance=instance,
                              run_config=config, selection=[a.key for a in (adjustment_factors, cleaned_ohlcv)]
                              + [dg.AssetKey("validated_ohlcv"), dg.AssetKey("quarantined_ohlcv")])
    check = gate_check(released)
    assert check.passed and check.metadata["released_sessions"].value == [HELD_KEY]
    assert "1 released" in check.description
    cleaned = load("cleaned_ohlcv", start=HELD_KEY, end=HELD_KEY, data_dir=root / "data")
    # The six quarantined rows are bridged like any bad row once the session is accepted.
    assert len(cleaned) == len(SYMBOLS) and set(cleaned.loc[cleaned["filled"], "symbol"]) == set(BROKEN)
    assert partition_meta(released, "cleaned_ohlcv")[HELD_KEY]["held"].value is False
