"""The ingestion assets (``universe``, ``raw_ohlcv``) end to end through real Dagster runs on a
small synthetic market of 40 symbols: a re-run rewrites the same bytes, a partition range is one
run, and the partitions are the NYSE sessions.

The tests materialise through ``dagster.materialize`` on a throwaway instance, with the
resources built explicitly (a temp data directory), so nothing depends on the environment, the
network or ``./data``. A folder of CSV files with bad inputs is in test_ingestion_csv_folder.py,
a provider outage in test_ingestion_provider_outage.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster import DagsterEventType

from alphatwin_pipelines import load
from alphatwin_pipelines.calendar import sessions_between
from assets.ingestion import raw_ohlcv, universe
from assets.partitions import nyse_sessions
from assets.resources import MarketDataResource, StorageResource

from ingestion_support import DAY, RANGE, events_of, partition_file, partition_files, raw_materializations, sha, value

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

RANGE_TAGS = {"dagster/asset_partition_range_start": RANGE[0], "dagster/asset_partition_range_end": RANGE[1]}
RAW_KEY = dg.AssetKey("raw_ohlcv")
PARTITION_METADATA = {"rows", "symbols", "symbols_missing", "source", "duration_s", "peak_rss_mb"}


# -- helpers -------------------------------------------------------------------------------------
def synthetic(data_dir: Path) -> dict:
    return {
        "storage": StorageResource(data_dir=str(data_dir)),
        "market_data": MarketDataResource(source="synthetic", synthetic_symbols=40),
    }


# -- 1. idempotency ------------------------------------------------------------------------------
def test_rematerialising_a_partition_is_byte_identical_and_reports_its_metadata(tmp_path, instance):
    data_dir = tmp_path / "data"
    resources = synthetic(data_dir)
    digests, rows = [], []
    for _ in range(2):
        result = dg.materialize([universe, raw_ohlcv], partition_key=DAY, resources=resources, instance=instance)
        assert result.success
        path = partition_file(data_dir, DAY)
        digests.append((sha(path), sha(data_dir / "universe.parquet")))
        mats = raw_materializations(result)
        assert list(mats) == [DAY]
        meta = mats[DAY].metadata
        assert PARTITION_METADATA <= set(meta), f"missing: {PARTITION_METADATA - set(meta)}"
        assert value(meta, "rows") == pq.read_metadata(path).num_rows > 0
        assert value(meta, "symbols") == load("raw_ohlcv", data_dir=data_dir)["symbol"].nunique()
        assert value(meta, "symbols") + value(meta, "symbols_missing") == 40
        assert value(meta, "source").startswith("synthetic")
        assert value(meta, "duration_s") >= 0 and value(meta, "peak_rss_mb") > 0
        assert value(meta, "symbols_failed") == 0
        assert Path(meta["path"].path) == path
        rows.append(value(meta, "rows"))

    assert digests[0] == digests[1], "a re-run rewrites the same bytes"
    assert rows[0] == rows[1]
    assert partition_files(data_dir) == [f"{DAY}.parquet"], "no temporary files are left behind"
    # The instance's event log holds both materialisations of the partition, with the metadata.
    records = instance.fetch_materializations(RAW_KEY, limit=10).records
    assert [r.partition_key for r in records] == [DAY, DAY]
    assert all(PARTITION_METADATA <= set(r.asset_materialization.metadata) for r in records)


# -- 2. a range is one run ---------------------------------------------------------------------
def test_partition_range_is_one_run_with_one_materialization_per_session(tmp_path, instance):
    data_dir = tmp_path / "range"
    resources = synthetic(data_dir)
    dg.materialize([universe], resources=resources, instance=instance)
    runs_before = len(instance.get_runs())

    result = dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], tags=RANGE_TAGS,
                            resources=resources, instance=instance)

    assert result.success
    assert len(instance.get_runs()) == runs_before + 1, "a range backfill is exactly one run"
    expected = list(sessions_between(*RANGE).strftime("%Y-%m-%d"))
    assert len(expected) == 10
    assert nyse_sessions.get_partition_keys_in_range(dg.PartitionKeyRange(*RANGE)) == expected
    assert len(events_of(result, DagsterEventType.STEP_START)) == 1
    mats = raw_materializations(result)
    assert sorted(mats) == expected
    for key, mat in mats.items():
        path = partition_file(data_dir, key)
        assert Path(mat.metadata["path"].path) == path
        assert value(mat.metadata, "rows") == pq.read_metadata(path).num_rows > 0
        assert value(mat.metadata, "dagster/row_count") == value(mat.metadata, "rows")
        assert value(mat.metadata, "sessions_in_run") == 10
    assert value(mats[expected[0]].metadata, "rows_in_run") == sum(value(m.metadata, "rows") for m in mats.values())
    records = instance.fetch_materializations(RAW_KEY, limit=100).records
    assert sorted(r.partition_key for r in records) == expected
    assert {r.run_id for r in records} == {result.run_id}
    stored = sorted(p.stem for p in (data_dir / "raw_ohlcv").glob("*.parquet"))
    assert stored == expected

    # Range independence: one-partition runs into another directory write the same bytes.
    single_dir = tmp_path / "single"
    for key in (expected[0], DAY, expected[-1]):
        single = dg.materialize([universe, raw_ohlcv], partition_key=key, resources=synthetic(single_dir),
                                instance=instance)
        assert single.success
        assert sha(partition_file(single_dir, key)) == sha(partition_file(data_dir, key)), key
        assert value(raw_materializations(single)[key].metadata, "rows") == value(mats[key].metadata, "rows")


def test_range_across_a_holiday_writes_only_sessions(tmp_path, instance):
    data_dir = tmp_path / "data"
    resources = synthetic(data_dir)
    dg.materialize([universe], resources=resources, instance=instance)
    tags = {"dagster/asset_partition_range_start": "2024-07-01", "dagster/asset_partition_range_end": "2024-07-08"}

    result = dg.materialize([universe, raw_ohlcv], selection=[raw_ohlcv], tags=tags, resources=resources,
                            instance=instance)

    expected = ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08"]  # not the 4th of July
    assert sorted(raw_materializations(result)) == expected
    assert partition_files(data_dir) == [f"{k}.parquet" for k in expected]


# -- 3. the partition set ------------------------------------------------------------------------
def test_partitions_are_nyse_sessions():
    assert raw_ohlcv.partitions_def == nyse_sessions
    keys = nyse_sessions.get_partition_keys()
    key_set = set(keys)
    assert "2024-07-04" not in key_set  # Independence Day
    assert "2001-09-11" not in key_set  # markets closed after the attacks
    assert not nyse_sessions.has_partition_key("2024-07-04")
    assert {"2024-07-03", "2024-07-05", "2001-09-10", "2001-09-17", DAY} <= key_set
    assert not any(dt.date.fromisoformat(k).weekday() >= 5 for k in keys), "no weekends"
    assert keys == sorted(keys) and len(keys) == len(key_set)
    in_2024 = [k for k in keys if k.startswith("2024-")]
    assert in_2024 == list(sessions_between("2024-01-01", "2024-12-31").strftime("%Y-%m-%d"))
    assert len(in_2024) == 252


def test_first_partition_is_2000_01_03_by_default():
    import os
    import subprocess
    import sys

    if not os.environ.get("ALPHATWIN_START"):
        assert nyse_sessions.get_first_partition_key() == "2000-01-03"
        assert nyse_sessions.get_partition_keys()[0] == "2000-01-03"
        return
    # ALPHATWIN_START is set in this environment: check the default in a clean interpreter.
    env = {k: v for k, v in os.environ.items() if k != "ALPHATWIN_START"}
    code = "from assets.partitions import nyse_sessions as p; print(p.get_first_partition_key())"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2000-01-03"

