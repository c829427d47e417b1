"""Raw OHLCV backfill: one single-run backfill of 1000 symbols x 5 years against 20 one-partition runs.

Both go through the real `dagster asset materialize` CLI on a throwaway SQLite instance, so
the figures include Dagster's own per-run cost. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_raw_backfill.py [--start 2020-01-02 --end 2024-12-31 --single-runs 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def materialize(env, *args) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([DAGSTER, "asset", "materialize", "-f", "definitions.py", "-d", ".", *args],
                          cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"materialize {args} failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", default="2020-01-02")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--single-runs", type=int, default=20)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from alphatwin_pipelines.calendar import sessions_between
    from alphatwin_pipelines.storage import TableStore

    sessions = sessions_between(args.start, args.end)
    with tempfile.TemporaryDirectory() as tmp:
        # PYTHONPATH: dagster.yaml's storage class is assets/instance.py (as the Makefile sets it).
        env = {**os.environ, "DAGSTER_HOME": f"{tmp}/home", "ALPHATWIN_DATA_DIR": f"{tmp}/data",
               "ALPHATWIN_SOURCE": "synthetic", "PYTHONPATH": str(REPO)}
        env.pop("ALPHATWIN_UNIVERSE", None)
        Path(env["DAGSTER_HOME"]).mkdir()
        (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        materialize(env, "--select", "universe")

        wall = materialize(env, "--select", "raw_ohlcv", "--partition-range", f"{sessions[0]:%Y-%m-%d}...{sessions[-1]:%Y-%m-%d}")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        raw = TableStore(env["ALPHATWIN_DATA_DIR"]).read_partitions("raw_ohlcv")
        rows, symbols = len(raw), raw["symbol"].nunique()

        picks = sessions[-args.single_runs:]
        t0 = time.perf_counter()
        for s in picks:
            materialize(env, "--select", "raw_ohlcv", "--partition", f"{s:%Y-%m-%d}")
        separate = time.perf_counter() - t0

    per_backfill = wall / len(sessions)
    per_separate = separate / len(picks)
    print(f"single-run backfill : {len(sessions)} sessions x {symbols} symbols = {rows:,} rows")
    print(f"  wall               {wall:8.1f} s   (target <= 60 s)")
    print(f"  rows per second    {rows / wall:10,.0f}")
    print(f"  peak RSS           {peak_mib:8.0f} MiB (largest process of the run)")
    print(f"  per session        {per_backfill * 1000:8.1f} ms")
    print(f"{len(picks)} separate runs   : {separate:8.1f} s, {per_separate:6.2f} s per session")
    print(f"ratio separate/backfill per session: {per_separate / per_backfill:6.0f}x")


if __name__ == "__main__":
    main()
