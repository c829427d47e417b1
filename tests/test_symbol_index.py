"""The per-symbol history index: reads by symbol equal the per-session read, never stale, atomic, idempotent."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines import load, symbol_index
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.inventory import inventory
from alphatwin_pipelines.schema import arrow_to_frame
from alphatwin_pipelines.storage import TableStore

TABLE = "features"


def _frame(sessions, seed=0) -> pd.DataFrame:
    """Rows per session in a shuffled symbol order; ZZZ only in 2020, NEW only from 2021, two rows per
    session for DUP (order within a session matters)."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in sessions:
        names = ["AAA", "BBB", "DUP", "DUP"] + (["ZZZ"] if day.year == 2020 else ["NEW"])
        for k, symbol in enumerate(rng.permutation(names)):
            rows.append((symbol, day, *rng.normal(size=3), k))
    return pd.DataFrame(rows, columns=["symbol", "date", "f1", "f2", "f3", "k"]).astype({"date": "datetime64[ns]"})


@pytest.fixture
def store(tmp_path) -> TableStore:
    store = TableStore(tmp_path)
    sessions = sessions_between("2020-12-01", "2021-01-29")
    store.write_sessions(TABLE, _frame(sessions), sessions)
    return store


def _per_session(store, **kwargs) -> pd.DataFrame:
    """Today's read: every session file, filtered inside Parquet."""
    sessions = store.stored_sessions(TABLE)
    lo, hi = pd.Timestamp(kwargs.get("start", sessions[0])), pd.Timestamp(kwargs.get("end", sessions[-1]))
    paths = [store.partition_path(TABLE, s) for s in sessions if lo <= s <= hi]
    return store._read_files(paths, kwargs.get("symbols"), kwargs.get("columns"))


READS = [dict(symbols=["AAA"]), dict(symbols=["zzz", "NEW", "DUP"]), dict(symbols=["ZZZ"], start="2021-01-04"),
         dict(symbols=["DUP", "BBB"], start="2020-12-15", end="2021-01-12", columns=["f2", "date", "k"]),
         dict(symbols=["MISSING"])]


@pytest.mark.parametrize("kwargs", READS)
def test_symbol_reads_equal_the_per_session_read(store, kwargs):
    report = store.compact_by_symbol(TABLE)
    assert report.built == [2020, 2021] and report.skipped == {}
    expected = _per_session(store, **kwargs)
    got = store.read_partitions(TABLE, start=kwargs.get("start"), end=kwargs.get("end"), symbols=kwargs["symbols"],
                                columns=kwargs.get("columns"))
    pd.testing.assert_frame_equal(got, expected)
    keys = [p.stem for p in sorted(store.table_dir(TABLE).glob("*.parquet"))
            if kwargs.get("start", "0") <= p.stem <= kwargs.get("end", "9")]
    indexed = symbol_index.read_symbols(store.table_dir(TABLE), keys, kwargs["symbols"], kwargs.get("columns"))
    pd.testing.assert_frame_equal(arrow_to_frame(indexed), expected)  # served by the index, not the fallback
    assert (symbol_index.index_dir(store.table_dir(TABLE)) / "2021.arrow").exists()


def test_rewritten_added_and_deleted_sessions_are_read_fresh(store):
    store.compact_by_symbol(TABLE)
    changed, added = pd.Timestamp("2021-01-05"), sessions_between("2021-02-01", "2021-02-02")
    store.write_sessions(TABLE, _frame([changed], seed=7), [changed])
    store.write_sessions(TABLE, _frame(added, seed=8), added)
    store.partition_path(TABLE, "2020-12-02").unlink()
    info = symbol_index.describe(store.table_dir(TABLE), [p.stem for p in store.table_dir(TABLE).glob("*.parquet")])
    assert info["serving"] == info["sessions"] - 3  # the rewritten and the two new ones come from their files
    for symbols in (["AAA", "NEW"], ["DUP"], ["ZZZ"]):
        pd.testing.assert_frame_equal(load(TABLE, symbols=symbols, data_dir=store.data_dir),
                                      _per_session(store, symbols=symbols))
    fresh = load(TABLE, symbols=["AAA"], start=changed, end=changed, data_dir=store.data_dir)
    assert fresh["f1"].iloc[0] == _frame([changed], seed=7).query("symbol == 'AAA'")["f1"].iloc[0]
    report = store.compact_by_symbol(TABLE)
    assert report.built == [2020, 2021] and report.sessions == len(store.stored_sessions(TABLE))


def test_recompaction_gives_identical_bytes(store):
    first = store.compact_by_symbol(TABLE)
    folder = symbol_index.index_dir(store.table_dir(TABLE))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = store.compact_by_symbol(TABLE)
    assert again.built == [] and again.current == [2020, 2021] and again.bytes == first.bytes
    sessions = store.stored_sessions(TABLE)  # re-materialised with the same values: files untouched
    store.write_sessions(TABLE, _frame(sessions), sessions)
    for path in folder.iterdir():
        path.unlink()
    assert store.compact_by_symbol(TABLE).built == [2020, 2021]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _compact_and_die(data_dir):
    def half_then_kill(tmp, data, sources):
        with open(tmp, "wb") as fh:
            fh.write(b"ARROW1\0\0" + b"x" * 1000)
        os.kill(os.getpid(), signal.SIGKILL)

    symbol_index._write = half_then_kill
    TableStore(data_dir).compact_by_symbol(TABLE)


def test_killed_compaction_leaves_the_previous_index_readable(store):
    store.compact_by_symbol(TABLE)
    folder = symbol_index.index_dir(store.table_dir(TABLE))
    before = {p.name: p.read_bytes() for p in folder.glob("*.arrow")}
    changed = pd.Timestamp("2020-12-03")
    store.write_sessions(TABLE, _frame([changed], seed=3), [changed])
    child = multiprocessing.get_context("fork").Process(target=_compact_and_die, args=(store.data_dir,))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in folder.glob("*.arrow")} == before  # only a hidden temporary was left
    pd.testing.assert_frame_equal(store.read_partitions(TABLE, symbols=["AAA", "ZZZ"]),
                                  _per_session(store, symbols=["AAA", "ZZZ"]))
    assert store.compact_by_symbol(TABLE).built == [2020]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_year_of_mixed_schemas_is_left_to_its_files(store):
    day = pd.Timestamp("2020-12-04")
    store.write_sessions(TABLE, _frame([day]).assign(f4=1.0), [day])
    report = store.compact_by_symbol(TABLE)
    assert report.built == [2021] and "another schema" in report.skipped[2020]
    pd.testing.assert_frame_equal(store.read_partitions(TABLE, symbols=["AAA"], start="2021-01-01"),
                                  _per_session(store, symbols=["AAA"], start="2021-01-01"))


def test_the_asset_compacts_the_indexed_tables_and_backfills_trigger_it(store):
    import dagster as dg

    from assets.resources import StorageResource
    from assets.symbol_index import symbol_history_index
    from schedules.symbol_index import backfill_request

    result = dg.materialize([symbol_history_index], resources={"storage": StorageResource(data_dir=str(store.data_dir))})
    metadata = result.asset_materializations_for_node("symbol_history_index")[0].metadata
    assert metadata["features/sessions_indexed"].value == len(store.stored_sessions(TABLE))
    assert metadata["features/years_rebuilt"].value == 2 and "cleaned_ohlcv/sessions_indexed" not in metadata
    listed = {row["table"]: row for row in inventory(store)}
    assert listed[TABLE]["index"]["serving"] == listed[TABLE]["index"]["sessions"] == len(store.stored_sessions(TABLE))

    def run(start, end, assets=("features",)):
        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
        return dg.DagsterRun(job_name="__ASSET_JOB", run_id=f"run-{start}", tags=tags,
                             asset_selection=frozenset(dg.AssetKey(a) for a in assets))

    assert backfill_request(run("2020-01-02", "2020-12-31")).run_key == "run-2020-01-02"
    assert backfill_request(run("2020-12-01", "2020-12-03")) is None  # a few sessions: the weekly run will do
    assert backfill_request(run("2020-01-02", "2020-12-31", assets=("scanner_results",))) is None


def test_cleaned_bars_by_symbol_keep_point_in_time_adjustment(tmp_path):
    from alphatwin_pipelines.sources import make_source
    from tests.fixtures.research import build_cleaned

    store = TableStore(tmp_path)
    build_cleaned(store, make_source("synthetic", seed=3, n_symbols=6, defects=0), sessions_between("2020-11-02", "2021-02-26"))
    symbols = sorted(store.read_table("universe")["symbol"])[:3]
    before = [load("cleaned_ohlcv", symbols=symbols, data_dir=tmp_path, as_of=as_of) for as_of in (None, "2020-12-31")]
    assert store.compact_by_symbol("cleaned_ohlcv").built == [2020, 2021]
    after = [load("cleaned_ohlcv", symbols=symbols, data_dir=tmp_path, as_of=as_of) for as_of in (None, "2020-12-31")]
    for old, new in zip(before, after):
        pd.testing.assert_frame_equal(new, old)
