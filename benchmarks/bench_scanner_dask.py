"""Scanner on Dask: 1000 symbols × 1260 sessions, last session vs full backfill, 1 vs 2 workers.

    .venv/bin/python benchmarks/bench_scanner_dask.py [--symbols 1000] [--sessions 1260] [--repeats 3]

Bars are seeded geometric random walks with a market and a sector factor (adj_* = raw).
Both clusters (process-based LocalClusters, threads_per_worker=1) are started and warmed
first (imports, a tiny scan, then one untimed scan of the benchmark's own data), so neither
start-up nor first-use costs are timed. The configurations then run in interleaved rounds on
the same data and each figure is the median of ``--repeats`` rounds. Peak RSS is sampled every
100 ms over the driver and all its child processes (nannies and workers) together, and for the
driver alone. Figures are printed, nothing is asserted: read them against the machine's load
(printed too).
"""

from __future__ import annotations

import argparse
import contextlib
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
    """Peak RSS of this process alone and of this process plus all descendants.

    Listing the descendants scans every process on the machine, which at every sample takes
    CPU from the driver: free on the idle core of a 1-worker run, not in a 2-worker one. So the
    list is taken once on entry and refreshed every ``refresh_s``; a sample reads only the
    known processes' RSS."""

    def __init__(self, interval_s: float = 0.1, refresh_s: float = 5.0):
        self.me = psutil.Process()
        self.interval, self.refresh = interval_s, refresh_s
        self.peak_total = self.peak_driver = 0.0
        self._children: list[psutil.Process] = []
        self._listed = -float("inf")
        self._stop = threading.Event()

    def _sample(self):
        if time.monotonic() - self._listed > self.refresh:
            self._children, self._listed = self.me.children(recursive=True), time.monotonic()
        driver = self.me.memory_info().rss
        total = driver
        for child in self._children:
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
        self._listed = -float("inf")  # a final full listing
        self._sample()


def _cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _workers_cpu(client) -> float:
    return sum(client.run(_cpu_seconds).values()) if client is not None else 0.0


def run_once(fn, client=None):
    """One run: wall seconds, driver CPU seconds, the workers' CPU seconds (summed over the
    worker processes, so time a busy machine takes away from them is not counted) and the result."""
    c0, w0, t0 = _cpu_seconds(), _workers_cpu(client), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    return wall, _cpu_seconds() - c0, _workers_cpu(client) - w0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1260)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    t0 = time.perf_counter()
    cleaned, universe = make_cleaned(args.symbols, args.sessions)
    print(f"data: {args.symbols} symbols × {args.sessions} sessions = {len(cleaned):,} rows "
          f"({cleaned.memory_usage(deep=True).sum() / 2**20:.0f} MiB) generated in {time.perf_counter() - t0:.1f}s")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    scenarios = {"last session": None, f"all {args.sessions} sessions": "all"}
    warm = make_cleaned(30, 300, seed=1)
    runners = {0: lambda sessions: scan(cleaned, universe, sessions)}
    clients = {}
    with contextlib.ExitStack() as stack:
        from distributed import Client

        for n in args.workers:
            t0 = time.perf_counter()
            cluster = stack.enter_context(local_cluster(n_workers=n, threads_per_worker=1))
            client = clients[n] = stack.enter_context(Client(cluster))
            client.wait_for_workers(n)
            run_scan(*warm, "all", client=client)  # imports and first-task costs, untimed
            run_scan(cleaned, universe, None, client=client)  # the benchmark's data once, untimed
            runners[n] = lambda sessions, client=client: run_scan(cleaned, universe, sessions, client=client)
            print(f"cluster with {n} worker(s) up and warm in {time.perf_counter() - t0:.1f}s")
        # Every configuration runs once per round, rounds interleaved, so a change in the
        # machine's load hits all of them alike; each figure is the median over the rounds.
        runs = {(n, label): [] for label in scenarios for n in runners}
        signals, same = {}, True
        with TreeRSS() as rss:
            for _ in range(args.repeats):
                for label, sessions in scenarios.items():
                    reference = None
                    for n, runner in runners.items():  # the in-process runner first
                        wall, cpu, worker_cpu, res = run_once(lambda: runner(sessions), clients.get(n))
                        runs[(n, label)].append((wall, cpu, worker_cpu))
                        signals[(n, label)] = len(res.signals)
                        reference = res if reference is None else reference
                        same = same and all(getattr(res, f).equals(getattr(reference, f)) for f in
                                            ("signals", "symbol_context", "sector_rotation", "top_pairs"))
                        del res
    median = {key: tuple(float(np.median([r[i] for r in values])) for i in range(3)) for key, values in runs.items()}
    print(f"\n{'runner':<11}{'workers':>8}  {'scan':<20}{'wall s (median)':>16}{'speed-up':>10}"
          f"{'driver cpu s':>14}{'worker cpu s':>14}{'signals':>11}   walls")
    for (n, label), (wall, cpu, worker_cpu) in median.items():
        base = median.get((min(args.workers), label))
        speed = f"{base[0] / wall:.2f}×" if n and base else ""
        walls = " ".join(f"{r[0]:.2f}" for r in runs[(n, label)])
        print(f"{'dask' if n else 'in-process':<11}{n or '-':>8}  {label:<20}{wall:>16.2f}{speed:>10}{cpu:>14.2f}"
              f"{(f'{worker_cpu:.2f}' if n else '-'):>14}{signals[(n, label)]:>11,}   {walls}")
    print("driver cpu s = CPU time of the driver (preparing, ranking, assembling the frames); worker cpu s = "
          "CPU time of all worker processes together. Medians over the rounds; walls = every round.")
    print(f"peak RSS over the timed runs (driver and workers together / driver alone): "
          f"{rss.peak_total:.0f} / {rss.peak_driver:.0f} MiB")
    print(f"\nresults identical across runners and worker counts: {same}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")


if __name__ == "__main__":
    main()
