"""Batched Optuna studies: one family x 12 levels x 500 trials on 100 symbols x 10 years in sample.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_optimisation.py``
(``--family``, ``--trials``, ``--batch-size``, ``--symbols``, ``--data-dir`` to reuse a built market,
``--peer-levels``/``--peer-trials`` for the subset the per-trial peer runs).

Data: the offline synthetic market through ingestion, quality and cleaning
(``build_research_data(scan=False)``), 2014-01-02 .. 2024-12-31: the first year warms indicators
up, the last ten are in sample. The family has 12 complexity levels (0..11), so the 12 studies are
its 12 levels. The studies run through ``optimise.search`` (seeded TPE with constant_liar, B trials
asked and evaluated together in the fused kernel, one indicator cache for all levels, in-memory
storage as in a Dask task before it writes back).

Peer, in the same run: today's one-trial-at-a-time loop (``run_study`` + ``PortfolioObjective``:
median pruning on the NumPy estimate, one vectorbt simulation per trial, SQLite storage) on a
subset of levels and trials; its per-trial time is extrapolated to the full budget. Prints wall
time, trials/s, peak RSS and the ratio; timings vary with the machine's load (printed too).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.backtest import configure_numba_cache, warm_up  # noqa: E402
from alphatwin_pipelines.optimise import PortfolioObjective, ProgressLogger, run_study, search  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.strategies import MAX_LEVEL, Indicators, MarketArrays  # noqa: E402
from alphatwin_pipelines.tables import read_adjusted  # noqa: E402
from tests.fixtures.research import build_research_data  # noqa: E402


def build_market(data_dir: Path, n_symbols: int) -> MarketArrays:
    if not TableStore(data_dir).stored_sessions("cleaned_ohlcv").size:
        build_research_data(data_dir, n_symbols=n_symbols, start="2014-01-02", end="2024-12-31", scan=False)
    return MarketArrays.from_bars(read_adjusted(TableStore(data_dir)), price="adj")


def batched(market, family, levels, trials, batch_size, log):
    start, indicators = market.dates[252], Indicators(market)
    t0, done = time.perf_counter(), 0
    for level in levels:
        progress = ProgressLogger(log, f"batched {family} L{level}", trials, lines=2)
        result = search(market, family, level, start, trials, 42, batch_size=batch_size, indicators=indicators,
                        progress=progress)
        done += result.ran
    return time.perf_counter() - t0, done


def per_trial(market, family, levels, trials, storage, log):
    start, t0, done, pruned = market.dates[252], time.perf_counter(), 0, 0
    for level in levels:
        objective = PortfolioObjective(market, family, level, start)
        progress = ProgressLogger(log, f"per-trial {family} L{level}", trials, lines=1)
        result = run_study(objective, f"bench/peer/{family}/L{level}", storage, trials, 42, progress=progress)
        done, pruned = done + result.ran, pruned + result.n_pruned
    return time.perf_counter() - t0, done, pruned


def main() -> None:
    configure_numba_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="ma_cross")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--studies", type=int, default=12, help="family-level studies (levels repeat if fewer exist)")
    parser.add_argument("--peer-levels", type=int, nargs="+", default=[0, 5, 11])
    parser.add_argument("--peer-trials", type=int, default=10)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("bench_optimisation")
    levels = [i % (MAX_LEVEL + 1) for i in range(args.studies)]

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        t0 = time.perf_counter()
        market = build_market(data_dir, args.symbols)
        print(f"market: {market.shape[1]} symbols x {market.shape[0]} sessions ({market.dates[0]:%Y-%m-%d} .. "
              f"{market.dates[-1]:%Y-%m-%d}), built/read in {time.perf_counter() - t0:.1f} s")
        print(f"numba warm-up: {warm_up():.1f} s; cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        search(market, args.family, 0, market.dates[252], 2, 0, batch_size=2)  # compile the kernels once

        cpu0 = time.process_time()
        with measure() as cost:
            wall, done = batched(market, args.family, levels, args.trials, args.batch_size, log)
        cpu = time.process_time() - cpu0
        load_batched = os.getloadavg()[0]
        storage = f"sqlite:///{Path(tmp) / 'bench_optuna.db'}"
        cpu0 = time.process_time()
        peer_wall, peer_done, peer_pruned = per_trial(market, args.family, args.peer_levels, args.peer_trials,
                                                      storage, log)
        peer_cpu = time.process_time() - cpu0
        per_trial_rate = peer_done / peer_wall
        print(f"\nbatched: {len(levels)} studies ({args.family} levels {sorted(set(levels))}) x {args.trials} trials "
              f"= {done} trials in {wall:.1f} s = {done / wall:.1f} trials/s (batch {args.batch_size}), "
              f"peak RSS {cost.peak_rss_mb:.0f} MB, load average {load_batched:.1f} (target >= 100 trials/s); "
              f"CPU {cpu:.1f} s = {done / cpu:.1f} trials per CPU-second")
        print(f"per-trial peer: levels {args.peer_levels} x {args.peer_trials} trials = {peer_done} trials in "
              f"{peer_wall:.1f} s = {per_trial_rate:.2f} trials/s ({peer_pruned} pruned), "
              f"{peer_done / peer_cpu:.2f} trials per CPU-second; extrapolated to {done} trials: "
              f"{done / per_trial_rate:.0f} s")
        print(f"speed-up: {done / wall / per_trial_rate:.1f}x wall, {done / cpu / (peer_done / peer_cpu):.1f}x CPU "
              f"(target >= 5x); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
