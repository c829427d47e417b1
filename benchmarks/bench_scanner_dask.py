"""Scanner on Dask: 1000 symbols × 1260 sessions, last session vs full backfill, 1 vs 2 workers.

    .venv/bin/python benchmarks/bench_scanner_dask.py [--symbols 1000] [--sessions 1260] [--repeats 2]

Bars are seeded geometric random walks with a market and a sector factor (adj_* = raw).
Each configuration runs on a fresh process-based LocalCluster (threads_per_worker=1) whose
workers are warmed up first (imports, one tiny scan), so start-up is not timed. Wall time is
the best of ``--repeats`` runs; peak RSS is sampled every 100 ms over the driver and all its
child processes (nannies and workers) together, and for the driver alone. Figures are
printed, nothing is asserted: read them against the machine's load (printed too).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.scanner import scan  # noqa: E402
from alphatwin_pipelines.scanner.dask_runner import local_cluster, run_scan  # noqa: E402

SECTORS = ("Communication", "Consumer Disc.", "Consumer Staples", "Energy", "Financials", "Health Care",
           "Industrials", "Materials", "Real Estate", "Technology", "Utilities")


def make_cleaned(n_symbols: int, n_sessions: int, seed: int = 2024) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cleaned-like bars: one row per symbol per weekday session, adjusted = raw."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(end="2025-12-31", periods=n_sessions).astype("datetime64[ns]").to_numpy()
    sector_of = np.arange(n_symbols) % len(SECTORS)
    market = rng.normal(0.0003, 0.009, n_sessions)
    sector_f = rng.normal(0, 0.006, (n_sessions, len(SECTORS)))
    rets = market[:, None] + sector_f[:, sector_of] + rng.normal(0, 0.014, (n_sessions, n_symbols))
    close = rng.uniform(10, 300, n_symbols) * np.exp(np.cumsum(rets, axis=0))
    spread = np.abs(rng.normal(0.006, 0.003, (n_sessions, n_symbols)))
    open_ = close * np.exp(rng.normal(0, 0.004, (n_sessions, n_symbols)))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    volume = rng.lognormal(14, 0.5, (n_sessions, n_symbols)).round()
    symbols = np.asarray([f"SYM{i:04d}" for i in range(n_symbols)], dtype=object)
    flat = lambda m: m.T.ravel()  # noqa: E731 - symbol-major rows
    cleaned = pd.DataFrame({
        "symbol": pd.array(np.repeat(symbols, n_sessions), dtype="string"),
        "date": np.tile(dates, n_symbols),
        "open": flat(open_), "high": flat(high), "low": flat(low), "close": flat(close),
        "volume": flat(volume).astype(np.int64), "dividend": 0.0, "split_ratio": 1.0,
        "source": pd.array(["synthetic"] * (n_symbols * n_sessions), dtype="string"),
    })
    for col in ("open", "high", "low", "close"):
        cleaned[f"adj_{col}"] = cleaned[col]
    cleaned["adj_volume"] = cleaned["volume"].astype(np.float64)
    cleaned["flags"] = ""
    universe = pd.DataFrame({"symbol": symbols, "sector": np.asarray(SECTORS, dtype=object)[sector_of],
                             "name": symbols}).astype("string")
    return cleaned, universe


class TreeRSS:
    """Peak RSS of this process alone and of this process plus all descendants."""

    def __init__(self, interval_s: float = 0.1):
        self.me = psutil.Process()
        self.interval = interval_s
        self.peak_total = self.peak_driver = 0.0
        self._stop = threading.Event()

    def _sample(self):
        driver = self.me.memory_info().rss
        total = driver
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        self.peak_driver = max(self.peak_driver, driver / 2**20)
        self.peak_total = max(self.peak_total, total / 2**20)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def timed(fn, repeats: int, client=None):
    """Best wall time of ``repeats`` runs, with the driver's CPU seconds and the workers'
    summed task-compute seconds of that best run (from the scheduler's task stream)."""
    best, result, cpu, task_s = float("inf"), None, 0.0, 0.0
    with TreeRSS() as rss:
        for _ in range(repeats):
            stream = None
            if client is not None:
                from distributed import get_task_stream

                stream = get_task_stream(client)
                stream.__enter__()
            c0, t0 = time.process_time(), time.perf_counter()
            result = fn()
            wall, driver_cpu = time.perf_counter() - t0, time.process_time() - c0
            busy = 0.0
            if stream is not None:
                stream.__exit__(None, None, None)
                busy = sum(ss["stop"] - ss["start"] for task in stream.data for ss in task["startstops"]
                           if ss["action"] == "compute")
            if wall < best:
                best, cpu, task_s = wall, driver_cpu, busy
    return best, rss, result, cpu, task_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1260)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    t0 = time.perf_counter()
    cleaned, universe = make_cleaned(args.symbols, args.sessions)
    print(f"data: {args.symbols} symbols × {args.sessions} sessions = {len(cleaned):,} rows "
          f"({cleaned.memory_usage(deep=True).sum() / 2**20:.0f} MiB) generated in {time.perf_counter() - t0:.1f}s")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    scenarios = {"last session": None, f"all {args.sessions} sessions": "all"}
    warm = make_cleaned(30, 300, seed=1)
    rows, results = [], {}
    for label, sessions in scenarios.items():
        wall, rss, res, cpu, busy = timed(lambda: scan(cleaned, universe, sessions), args.repeats)
        rows.append(("in-process", 0, label, wall, rss, len(res.signals), cpu, busy))
        results[(0, label)] = res
    for n in args.workers:
        t0 = time.perf_counter()
        with local_cluster(n_workers=n, threads_per_worker=1) as cluster:
            from distributed import Client

            with Client(cluster) as client:
                client.wait_for_workers(n)
                run_scan(*warm, "all", client=client)  # imports and first-task costs, untimed
                print(f"cluster with {n} worker(s) up and warm in {time.perf_counter() - t0:.1f}s")
                for label, sessions in scenarios.items():
                    wall, rss, res, cpu, busy = timed(lambda: run_scan(cleaned, universe, sessions, client=client),
                                                      args.repeats, client)
                    rows.append(("dask", n, label, wall, rss, len(res.signals), cpu, busy))
                    results[(n, label)] = res
    print(f"\n{'runner':<11}{'workers':>8}  {'scan':<20}{'wall s':>8}{'speed-up':>10}{'driver cpu s':>14}"
          f"{'task s':>8}{'peak RSS MiB (all / driver)':>30}{'signals':>11}")
    for runner, n, label, wall, rss, n_signals, cpu, busy in rows:
        base = next((r[3] for r in rows if r[0] == "dask" and r[1] == min(args.workers) and r[2] == label), None)
        speed = f"{base / wall:.2f}×" if runner == "dask" and base else ""
        tasks = f"{busy:.2f}" if runner == "dask" else "-"
        print(f"{runner:<11}{n or '-':>8}  {label:<20}{wall:>8.2f}{speed:>10}{cpu:>14.2f}{tasks:>8}"
              f"{rss.peak_total:>20.0f} / {rss.peak_driver:>6.0f}{n_signals:>11,}")
    print("task s = summed compute time of all Dask tasks (worker-seconds); driver cpu s = CPU time "
          "of the driver process, including ranking and assembling the frames")
    same = all(
        all(getattr(results[k], f).equals(getattr(results[(0, label)], f))
            for f in ("signals", "symbol_context", "sector_rotation", "top_pairs"))
        for k in results for label in scenarios if k[1] == label
    )
    print(f"\nresults identical across runners and worker counts: {same}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")


if __name__ == "__main__":
    main()
