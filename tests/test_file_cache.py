"""The in-process cache of decoded Parquet files: same rows as a plain read, never stale."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alphatwin_pipelines.file_cache import FileCache
from alphatwin_pipelines.storage import TableStore


SCHEMA = pa.schema([("symbol", pa.string()), ("date", pa.timestamp("ns")), ("close", pa.float64()), ("volume", pa.int64())])


def _session(day: int, rows: int) -> pa.Table:
    return pa.table({"symbol": [f"S{i}" for i in range(rows)], "date": pd.to_datetime([f"2024-01-{day:02d}"] * rows),
                     "close": [float(day * 100 + i) for i in range(rows)], "volume": list(range(rows))}, schema=SCHEMA)


@pytest.fixture()
def store(tmp_path) -> TableStore:
    store = TableStore(tmp_path)
    with store.batch():
        for day, rows in ((2, 3), (3, 0), (4, 5), (5, 2)):  # one empty session
            store.write_partition("bars", f"2024-01-{day:02d}", _session(day, rows))
    return store


def _paths(store: TableStore) -> list:
    return [store.partition_path("bars", s) for s in store.stored_sessions("bars")]


def test_reads_what_a_plain_read_gives_in_file_order_then_serves_it_from_memory(store):
    cache, paths = FileCache(), _paths(store)
    plain = pq.ParquetDataset([str(p) for p in paths]).read()
    assert cache.read(paths).equals(plain)
    assert (cache.hits, cache.misses) == (0, 4)
    assert cache.read(paths[::-1], ["close", "symbol"]).equals(
        pa.concat_tables([pq.read_table(p, columns=["close", "symbol"]) for p in paths[::-1]]))
    assert (cache.hits, cache.misses) == (4, 4)


def test_a_replaced_file_is_read_again_and_only_that_one(store):
    cache, paths = FileCache(), _paths(store)
    cache.read(paths, ["symbol", "close"])
    store.write_partition("bars", "2024-01-04", _session(4, 1).set_column(2, "close", pa.array([-1.0])))
    table = cache.read(paths, ["symbol", "close"])
    assert table.column("close").to_pylist() == [200.0, 201.0, 202.0, -1.0, 500.0, 501.0]
    assert (cache.hits, cache.misses) == (3, 5)


def test_more_columns_than_were_kept_are_read_from_disk(store):
    cache, paths = FileCache(), _paths(store)
    cache.read(paths, ["close"])
    assert cache.read(paths, ["close", "volume"]).column("volume").to_pylist() == [0, 1, 2, 0, 1, 2, 3, 4, 0, 1]
    assert cache.misses == 8
    assert cache.read(paths, ["volume"]).num_rows == 10 and cache.hits == 4


def test_memory_stays_within_its_bound_least_recently_used_first(store):
    paths = _paths(store)
    one = pq.read_table(paths[2]).nbytes
    cache = FileCache(max_bytes=one + 1)
    cache.read([paths[2]])
    cache.read([paths[0]])  # evicts the first: the two do not fit together
    assert cache._bytes <= one + 1
    cache.read([paths[2]])
    assert (cache.hits, cache.misses) == (0, 3)


def test_read_adjusted_reuses_the_bars_a_previous_stage_read(research_dir):
    from alphatwin_pipelines.tables import read_adjusted
    from alphatwin_pipelines.storage import FILE_CACHE

    store = TableStore(research_dir)
    FILE_CACHE.clear()
    first = read_adjusted(store, columns=["split_ratio"])
    hits = FILE_CACHE.hits
    again = read_adjusted(store, columns=[])
    assert FILE_CACHE.hits > hits
    pd.testing.assert_frame_equal(again, first.drop(columns=["split_ratio"]), check_exact=True)
