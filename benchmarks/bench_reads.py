"""Reads by symbol of a whole history: the per-symbol index against one file per session, in one run.

Builds features-shaped session files (setup, not timed): the real set's (symbol, session) pairs
from ../shared/data (504 symbols, 2000-01-03 .. 2021-04-21 = 5,359 sessions, symbols absent before
their listing) with the feature stage's schema (symbol, date and 75 float64 columns of random
values: stored features have near-random mantissas too). Then, per round, each read through
today's path (``TableStore._read_files``: a Parquet dataset over every session file, filtered by
symbol) and through ``read_partitions`` (the index where current), with different symbols each
round; one session's read and write (the daily path, unchanged); the compaction (from scratch,
no-op, after one new session); and a read with the newest session not yet compacted. Peer for
the index format: the same rows as one Parquet file per year with one row group per symbol, read
by row-group number (``--no-parquet-peer`` skips it). Prints wall and CPU seconds (user + kernel,
all threads) as median (range) over ``--repeats`` rounds; today's full-history reads run
``--slow-repeats`` times (each takes tens of seconds).

    .venv/bin/python benchmarks/bench_reads.py [--repeats 5 --slow-repeats 2 --keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines import load, symbol_index  # noqa: E402
from alphatwin_pipelines.calendar import sessions_between  # noqa: E402
from alphatwin_pipelines.stages.features import SCHEMA  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.tables import FEATURES  # noqa: E402
from tests.conftest import SP500_PARQUET  # noqa: E402

START, END = "2000-01-03", "2021-04-21"


def _pairs(n_symbols: int, start=START, end=END) -> pd.DataFrame:
    """(symbol, date) of the stored rows: the real set's, else every symbol every session."""
    if SP500_PARQUET.exists():
        pairs = pd.read_parquet(SP500_PARQUET, columns=["symbol", "date"])
        pairs["date"] = pd.to_datetime(pairs["date"]).astype("datetime64[ns]")
        pairs = pairs[pairs["date"].between(pd.Timestamp(start), pd.Timestamp(end))]
        keep = sorted(pairs["symbol"].unique())[:n_symbols]
        return pairs[pairs["symbol"].isin(keep)].reset_index(drop=True)
    sessions = sessions_between(start, end)
    names = [f"S{i:03d}" for i in range(n_symbols)]
    return pd.DataFrame({"symbol": np.tile(names, len(sessions)), "date": np.repeat(sessions, len(names))})


def _build(store: TableStore, pairs: pd.DataFrame) -> None:
    rng = np.random.default_rng(17)
    floats = [f.name for f in SCHEMA if f.name not in ("symbol", "date")]
    to_arrow = lambda frame: pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)  # noqa: E731
    for year, rows in pairs.sort_values(["date", "symbol"]).groupby(pairs["date"].dt.year, sort=True):
        frame = rows.reset_index(drop=True)
        frame = pd.concat([frame, pd.DataFrame(rng.normal(size=(len(frame), len(floats))), columns=floats)], axis=1)
        store.write_sessions(FEATURES, frame, pd.DatetimeIndex(frame["date"].unique()), to_arrow=to_arrow)
        print(f"  wrote {year}", end="\r", flush=True)


def _cost(fn) -> tuple[float, float, object]:
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def _parquet_peer(store: TableStore, folder: Path) -> dict[int, dict[str, int]]:
    """Each index year as a Parquet file with one row group per symbol; symbol -> row group per year."""
    groups = {}
    folder.mkdir(exist_ok=True)
    for path in sorted(symbol_index.index_dir(store.table_dir(FEATURES)).glob("*.arrow")):
        reader = pa.ipc.open_file(pa.memory_map(str(path)))
        target = folder / f"{path.stem}.parquet"
        names = [reader.get_batch(i).column(0)[0].as_py() for i in range(reader.num_record_batches)]
        if not target.exists():
            with pq.ParquetWriter(target, reader.schema.remove_metadata(), compression="snappy") as writer:
                for i in range(reader.num_record_batches):
                    writer.write_batch(reader.get_batch(i), row_group_size=1 << 30)
        groups[int(path.stem)] = {name: i for i, name in enumerate(names)}
    return groups


def _read_parquet_peer(folder: Path, groups: dict, symbols: list[str]) -> pd.DataFrame:
    parts = []
    for year, of in groups.items():
        handle = pq.ParquetFile(folder / f"{year}.parquet")
        wanted = [of[s] for s in symbols if s in of]
        if wanted:
            parts.append(handle.read_row_groups(wanted))
    return pa.concat_tables(parts).to_pandas()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=504)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-repeats", type=int, default=2)
    parser.add_argument("--start", default=START)
    parser.add_argument("--end", default=END)
    parser.add_argument("--keep", help="build (or reuse) the session files in this folder")
    parser.add_argument("--no-parquet-peer", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        store = TableStore(root)
        pairs = _pairs(args.symbols, args.start, args.end)
        sessions = store.stored_sessions(FEATURES)
        if len(sessions) < pairs["date"].nunique():
            wall, cpu, _ = _cost(lambda: _build(store, pairs))
            print(f"setup: {len(pairs):,} rows written in {wall:.0f} s")
            sessions = store.stored_sessions(FEATURES)
        symbols = sorted(pairs["symbol"].unique())
        paths = [store.partition_path(FEATURES, s) for s in sessions]
        print(f"{len(symbols)} symbols x {len(sessions)} sessions ({sessions[0]:%Y-%m-%d} .. {sessions[-1]:%Y-%m-%d}), "
              f"{sum(p.stat().st_size for p in paths) / 2**20:,.0f} MiB of session files")
        results: dict[str, list[tuple[float, float]]] = {}

        def record(name, fn):
            wall, cpu, out = _cost(fn)
            results.setdefault(name, []).append((wall, cpu))
            return out

        for old in symbol_index.index_dir(store.table_dir(FEATURES)).glob("*.arrow"):
            old.unlink()  # compaction from scratch
        report = record("compaction, from scratch", lambda: store.compact_by_symbol(FEATURES))
        print(f"index: {len(report.built)} years, {report.bytes / 2**20:,.0f} MiB")
        record("compaction, nothing changed", lambda: store.compact_by_symbol(FEATURES))
        peer_dir = root / "_parquet_peer"
        groups = None if args.no_parquet_peer else _parquet_peer(store, peer_dir)
        rng = np.random.default_rng(3)
        last = sessions[-1]
        last_rows = store.read_partitions(FEATURES, last, last)
        for round_ in range(args.repeats):
            one = [symbols[rng.integers(len(symbols))]]
            fifty = list(rng.choice(symbols, 50, replace=False))
            record("one symbol x 21 y, index", lambda: store.read_partitions(FEATURES, symbols=one))
            got = record("50 symbols x 21 y, index", lambda: store.read_partitions(FEATURES, symbols=fifty))
            record("load('features', one symbol), index", lambda: load(FEATURES, symbols=one, data_dir=root))
            if groups is not None:
                record("one symbol x 21 y, Parquet row group per symbol", lambda: _read_parquet_peer(peer_dir, groups, one))
                record("50 symbols x 21 y, Parquet row group per symbol", lambda: _read_parquet_peer(peer_dir, groups, fifty))
            record("one session, all columns", lambda: store.read_partitions(FEATURES, last, last))
            new = pa.Table.from_pandas(last_rows.assign(**{SCHEMA.names[2]: last_rows[SCHEMA.names[2]] + round_ + 1}),
                                       schema=SCHEMA, preserve_index=False)
            record("write one session (batch, as a nightly run)", lambda: _write_one(store, last, new))
            record("one symbol x 21 y, newest session not compacted", lambda: store.read_partitions(FEATURES, symbols=one))
            record("compaction after one new session", lambda: store.compact_by_symbol(FEATURES))
            if round_ < args.slow_repeats:
                record("one symbol x 21 y, today (file per session)", lambda: store._read_files(paths, one, None))
                want = record("50 symbols x 21 y, today (file per session)", lambda: store._read_files(paths, fifty, None))
                # the round's write changed the last session after ``got`` was read
                pd.testing.assert_frame_equal(got[got["date"] < last], want[want["date"] < last].reset_index(drop=True))
            print(f"round {round_ + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)
        print(f"\n{'figure':<52} {'wall s, median (range)':<26} CPU s, median (range)")
        for name, runs in results.items():
            walls, cpus = zip(*runs)
            print(f"{name:<52} {_summary(walls):<26} {_summary(cpus)}")
        for what in ("one symbol", "50 symbols"):
            today = results[f"{what} x 21 y, today (file per session)"]
            ours = results[f"{what} x 21 y, index"][:len(today)]
            print(f"{what}: today / index, CPU per round: " + " ".join(f"{t[1] / o[1]:.0f}x" for t, o in zip(today, ours)))
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


def _write_one(store: TableStore, session, data: pa.Table) -> None:
    with store.batch():
        store.write_partition(FEATURES, session, data)


def _summary(values) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


if __name__ == "__main__":
    main()
