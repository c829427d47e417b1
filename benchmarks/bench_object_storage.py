"""The table store on an S3-compatible server against a local folder, in one run.

Starts ``moto_server`` (moto in server mode: a single Python process, so an upper bound on what
MinIO or S3 would take for the same requests) on 127.0.0.1, and for each backend writes
features-shaped session files (symbol, date and 75 float64 columns of random values) for
``--symbols`` x ``--sessions``, then times: the first write of every session in one batch, the same
write again (unchanged bytes: no upload, no rename), one new session, one session's read, the
whole range's read, the per-symbol index (compaction, then one and 50 symbols' history). Prints
wall and CPU seconds (user + kernel, all threads, this process only: the server's CPU is apart) as
median (range) over ``--repeats`` rounds.

    .venv/bin/python benchmarks/bench_object_storage.py [--symbols 500 --sessions 252 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.calendar import sessions_between  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from tests.postgres_support import BIN, _free_port  # noqa: E402
from tests.s3_support import AWS_ENV  # noqa: E402

TABLE = "features"


def _frame(symbols: int, sessions: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = symbols * len(sessions)
    frame = pd.DataFrame({"symbol": np.tile([f"S{i:04d}" for i in range(symbols)], len(sessions)),
                          "date": np.repeat(sessions, symbols)})
    values = rng.standard_normal((n, 75))
    return pd.concat([frame, pd.DataFrame(values, columns=[f"f{i:02d}" for i in range(75)])], axis=1)


def _timed(fn) -> tuple[float, float]:
    before, start = os.times(), time.perf_counter()
    fn()
    after = os.times()
    return time.perf_counter() - start, (after.user - before.user) + (after.system - before.system)


def _round(store: TableStore, frame: pd.DataFrame, sessions: pd.DatetimeIndex, extra: pd.DataFrame) -> dict:
    symbols = sorted(frame["symbol"].unique())
    rng = np.random.default_rng(len(symbols))
    out = {
        "write, every session (fresh)": _timed(lambda: store.write_sessions(TABLE, frame, sessions)),
        "write again, unchanged": _timed(lambda: store.write_sessions(TABLE, frame, sessions)),
        "write one new session": _timed(lambda: store.write_sessions(TABLE, extra, extra["date"].unique())),
        "read one session": _timed(lambda: store.read_partitions(TABLE, start=sessions[-1], end=sessions[-1])),
        "read every session": _timed(lambda: store.read_partitions(TABLE)),
        "compact the per-symbol index": _timed(lambda: store.compact_by_symbol(TABLE)),
        "read one symbol (index)": _timed(lambda: store.read_partitions(TABLE, symbols=[symbols[7]])),
        "read 50 symbols (index)": _timed(
            lambda: store.read_partitions(TABLE, symbols=list(rng.choice(symbols, 50, replace=False)))),
    }
    return out


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    every = sessions_between("2023-01-03", "2025-12-31")
    sessions, new = every[: args.sessions], every[args.sessions: args.sessions + 1]
    frame, extra = _frame(args.symbols, sessions, 1), _frame(args.symbols, new, 2)
    port = _free_port()
    log = open(Path(tempfile.gettempdir()) / "bench_object_storage_moto.log", "w")
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                              stderr=subprocess.STDOUT)
    os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    time.sleep(2.0)
    import boto3

    client = boto3.client("s3")
    figures: dict[str, dict[str, list]] = {}
    try:
        for _ in range(args.repeats):
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            client.create_bucket(Bucket=bucket)
            with tempfile.TemporaryDirectory() as local:
                for name, root in (("local folder", local), ("S3 (moto)", f"s3://{bucket}/data")):
                    for step, cost in _round(TableStore(root), frame, sessions, extra).items():
                        figures.setdefault(step, {}).setdefault(name, []).append(cost)
    finally:
        server.terminate()
    print(f"{args.symbols} symbols x {len(sessions)} sessions, 77 columns; {args.repeats} rounds; "
          f"wall / CPU seconds of this process, median (range)")
    print(f"{'step':34s} {'local folder, wall':>22s} {'S3 (moto), wall':>22s} {'local CPU':>18s} {'S3 CPU':>18s}")
    for step, by in figures.items():
        local, remote = by["local folder"], by["S3 (moto)"]
        print(f"{step:34s} {_summary([w for w, _ in local]):>22s} {_summary([w for w, _ in remote]):>22s} "
              f"{_summary([c for _, c in local]):>18s} {_summary([c for _, c in remote]):>18s}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
