"""The data directory the dbt marts tests build from, and one Dagster run of the marts over it.

The shared research fixture (synthetic market through the real stages) is cut to its last
sessions, plus: corporate-action events from the real cleaning stage, bad raw rows planted in two
sessions and pushed through the real validation stage, and small contract-shaped tables for the
stages after the scanner (docs/contracts.md). tests/test_dbt_marts.py checks the marts built from
it against pandas; tests/test_dbt_object_storage.py builds them again from an object store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.schema import bars_to_arrow, frame_to_arrow
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions
from alphatwin_pipelines.stages.quality import validate_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALLOCATIONS, OPTIMISED, RAW, STRATEGY_RETURNS, UNIVERSE, VALIDATION

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = REPO_ROOT / "dbt"
DBT = Path(sys.executable).with_name("dbt")
SESSIONS_KEPT = 120  # enough history for the 2024-08-08 2-for-1 split in the synthetic market
PARTITIONED = ("raw_ohlcv", "validated_ohlcv", "quarantined_ohlcv", "cleaned_ohlcv", "features", "scanner_results")
MARTS = ("mart_daily_returns", "mart_quality_summary", "mart_scanner_leaderboard", "mart_strategy_scorecard",
         "mart_portfolio_sector_exposure")
IDS = ("00000000000000a1", "00000000000000b2", "00000000000000c3")


# -- the manifest the code location reads (`make setup` runs the same `dbt parse`) -------------
def ensure_manifest() -> None:
    manifest = DBT_DIR / "target" / "manifest.json"
    sources = [p for d in ("models", "tests", "macros") for p in (DBT_DIR / d).rglob("*") if p.is_file()]
    sources += [DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml"]
    if manifest.exists() and manifest.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    env = {k: v for k, v in os.environ.items() if k != "DBT_TARGET_PATH"}
    proc = subprocess.run([str(DBT), "parse", "--quiet", "--profiles-dir", "."], cwd=DBT_DIR, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# -- the data directory ------------------------------------------------------------------------
def _copy_recent(research: Path, dest: Path) -> pd.DatetimeIndex:
    sessions = TableStore(research).stored_sessions(RAW)[-SESSIONS_KEPT:]
    keep = {f"{s:%Y-%m-%d}.parquet" for s in sessions}
    for table in PARTITIONED:
        (dest / table).mkdir(parents=True)
        for name in keep:
            shutil.copy2(research / table / name, dest / table / name)
    shutil.copy2(research / f"{UNIVERSE}.parquet", dest / f"{UNIVERSE}.parquet")
    return sessions


def _plant_bad_rows(store: TableStore, sessions: pd.DatetimeIndex) -> dict[tuple[str, pd.Timestamp], str]:
    """Break raw rows in the last two sessions and re-run validation and cleaning on them."""
    bad_rows = {}
    for session, edits in zip(sessions[-2:], ([("close", -5.0, "price.non_positive"), ("low", 1e6, "ohlc.low_above_high")],
                                               [("open", -1.0, "price.non_positive")])):
        raw = store.read_partitions(RAW, session, session)
        for row, (column, value, rule) in enumerate(edits):
            raw.loc[row, column] = value
            bad_rows[(raw.loc[row, "symbol"], session)] = rule
        store.write_partition(RAW, session, bars_to_arrow(raw))
    validate_sessions(store, sessions[-2:])
    clean_sessions(store, sessions[-2:])
    return bad_rows


def _write_research_tables(store: TableStore, universe: pd.DataFrame) -> None:
    """Small tables shaped like docs/contracts.md for the stages the other helpers build."""
    rng = np.random.default_rng(11)
    optimised = pd.DataFrame({
        "strategy_id": IDS, "family": ["trend", "mean_reversion", "momentum"], "level": [1, 2, 3],
        "complexity": [1.0, 2.5, 4.0], "spec_json": "{}", "symbols_json": json.dumps(universe["symbol"][:5].tolist()),
        "start": pd.Timestamp("2024-01-02"), "end": pd.Timestamp("2024-06-28"), "n_trials": 40,
        "n_complete": [38, 37, 40], "n_pruned": [2, 3, 0], "seed": 7, "study_name": ["s1", "s2", "s3"],
        "is_sharpe": [1.4, 1.1, 2.0], "is_sortino": [2.0, 1.5, 3.0], "is_cagr": [0.2, 0.1, 0.3],
        "is_max_drawdown": [-0.1, -0.2, -0.15], "is_trades": [30.0, 12.0, 50.0],
        "scanner_partition": "2024-06-28", "record_json": "{}"})
    reports = optimised[["strategy_id", "family", "level", "complexity", "spec_json", "symbols_json", "n_trials",
                         "is_sharpe"]].assign(
        oos_sharpe=[0.2, 1.0, np.nan], oos_sortino=[0.3, 1.3, np.nan], oos_cagr=[0.01, 0.1, np.nan],
        oos_max_drawdown=[-0.3, -0.1, np.nan], dsr=[0.4, 0.97, np.nan], pbo=[0.6, 0.1, np.nan],
        passed=[False, True, False], reasons=["dsr 0.40 < 0.95", "", "no out-of-sample trades"],
        report_path="reports/strategy.html", scanner_partition="2024-06-28", record_json="{}")
    dates = pd.bdate_range("2024-07-01", periods=60)
    returns = pd.concat([pd.DataFrame({"date": dates, "strategy_id": s, "return": rng.normal(0.0005, 0.01, len(dates))})
                         for s in IDS[:2]], ignore_index=True)
    symbols = universe["symbol"][:5].tolist()
    # The first symbol's allocation sector disagrees with the universe; ZZZZ is in neither.
    allocation = pd.DataFrame({
        "allocation_version": "a" * 16, "as_of": pd.Timestamp("2024-12-31"), "method": "hrp",
        "kind": ["strategy", "strategy", *["symbol"] * 6], "name": [IDS[0], IDS[1], *symbols, "ZZZZ"],
        "weight": [0.4, 0.6, 0.35, 0.25, 0.2, -0.1, 0.2, 0.1],
        "sector": [None, None, "Not The Universe's", *universe["sector"][1:5].tolist(), None],
        "risk_contribution": [0.4, 0.6, *[np.nan] * 6],  # as the allocator writes symbol rows
        "spec_hashes": json.dumps(list(IDS[:2])), "scanner_partition": "2024-06-28", "cluster": 1})
    for name, frame in ((OPTIMISED, optimised), (VALIDATION, reports), (STRATEGY_RETURNS, returns), (ALLOCATIONS, allocation)):
        store.write_table(name, frame_to_arrow(frame))


@pytest.fixture(scope="module")
def planted(research_data, tmp_path_factory) -> tuple[Path, dict]:
    """The data directory and the bad raw rows planted in it ((symbol, session) -> rule)."""
    path = tmp_path_factory.mktemp("marts") / "data"
    sessions = _copy_recent(research_data, path)
    store = TableStore(path)
    bad_rows = _plant_bad_rows(store, sessions)
    build_events(store, sessions)
    _write_research_tables(store, store.read_table(UNIVERSE))
    return path, bad_rows


def build_marts(data_dir: str | os.PathLike, target_root: Path, raise_on_error: bool = True):
    """One Dagster run of every dbt model over ``data_dir`` (a folder or s3://), its dbt artifacts
    kept under ``target_root``: (the run's result, its run_results.json)."""
    ensure_manifest()
    from assets.marts import marts
    from assets.resources import StorageResource, dbt_resource

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TARGET_PATH", str(target_root))
        result = dg.materialize([marts], resources={"dbt": dbt_resource(), "storage": StorageResource(data_dir=str(data_dir))},
                                raise_on_error=raise_on_error)
    [run_dir] = target_root.glob(f"marts-{result.run_id[:7]}-*")
    return result, json.loads((run_dir / "run_results.json").read_text())
