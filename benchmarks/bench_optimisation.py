"""Optuna optimisation throughput: 10 complexity levels x 100 trials on 100 symbols x 5 years.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_optimisation.py``
(``--trials``, ``--levels``, ``--symbols``, ``--family``, ``--data-dir`` to reuse a built market).

Data: the offline synthetic market through ingestion, quality and cleaning
(``build_research_data(scan=False)``); the first year warms indicators up, the last four are in
sample. The studies use the production objective (shared indicator cache per market, median
pruning on the NumPy Sharpe estimate before the backtest, seeded TPE, SQLite storage). Peer, in
the same run: the same studies on a subset of levels and trials without the shared cache and
without pruning (one fresh ``Indicators`` per trial), i.e. a plain per-trial backtest loop.
Prints wall time, trials/s, pruned share, peak RSS and the speed ratio. Timings vary with load.
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
from alphatwin_pipelines.optimise import PortfolioObjective, ProgressLogger, run_study  # noqa: E402
from alphatwin_pipelines.profiling import measure  # noqa: E402
from alphatwin_pipelines.tables import read_adjusted  # noqa: E402
from alphatwin_pipelines.storage import TableStore  # noqa: E402
from alphatwin_pipelines.strategies import Indicators, MarketArrays  # noqa: E402
from tests.fixtures.research import build_research_data  # noqa: E402


def build_market(data_dir: Path, n_symbols: int) -> MarketArrays:
    if not TableStore(data_dir).stored_sessions("cleaned_ohlcv").size:
        build_research_data(data_dir, n_symbols=n_symbols, start="2020-01-02", end="2024-12-31", scan=False)
    return MarketArrays.from_bars(read_adjusted(TableStore(data_dir)), price="adj")


class NoCacheObjective(PortfolioObjective):
    """The peer: every trial rebuilds its indicators and simulates every symbol (no pruning)."""

    def __call__(self, trial) -> float:
        self.indicators = Indicators(self.market)
        return super().__call__(trial)


def run(market, family, levels, trials, storage, log, objective_class=PortfolioObjective, prune=True, tag="opt"):
    start = market.dates[252]
    done = pruned = 0
    t0 = time.perf_counter()
    for level in levels:
        objective = objective_class(market, family, level, start, prune_on_estimate=prune)
        progress = ProgressLogger(log, f"{tag} {family} L{level}", trials, lines=2)
        result = run_study(objective, f"bench/{tag}/{family}/L{level}", storage, trials, 42, progress=progress)
        done, pruned = done + result.ran, pruned + result.n_pruned
    return time.perf_counter() - t0, done, pruned


def main() -> None:
    configure_numba_cache()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="ma_cross")
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--peer-levels", type=int, nargs="+", default=[0, 5, 9])
    parser.add_argument("--peer-trials", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log = logging.getLogger("bench_optimisation")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        t0 = time.perf_counter()
        market = build_market(data_dir, args.symbols)
        print(f"market: {market.shape[1]} symbols x {market.shape[0]} sessions, built/read in {time.perf_counter() - t0:.1f} s")
        print(f"numba warm-up: {warm_up():.1f} s; cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        storage = f"sqlite:///{Path(tmp) / 'bench_optuna.db'}"

        with measure() as cost:
            wall, done, pruned = run(market, args.family, range(args.levels), args.trials, storage, log)
        print(f"\nfull run: {args.levels} levels x {args.trials} trials = {done} trials in {wall:.1f} s "
              f"({done / wall:.2f} trials/s), {pruned} pruned ({pruned / max(done, 1):.0%}), "
              f"peak RSS {cost.peak_rss_mb:.0f} MB (target <= 600 s)")

        subset = dict(family=args.family, levels=args.peer_levels, trials=args.peer_trials, storage=storage, log=log)
        fast = run(market, tag="peer-opt", **subset)
        slow = run(market, objective_class=NoCacheObjective, prune=False, tag="peer-plain", **subset)
        print(f"peer subset (levels {args.peer_levels} x {args.peer_trials} trials):")
        print(f"  shared indicators + pruning: {fast[1] / fast[0]:.2f} trials/s ({fast[2]} pruned)")
        print(f"  no cache, no pruning:        {slow[1] / slow[0]:.2f} trials/s")
        print(f"  speed-up: {slow[0] / fast[0]:.2f}x  (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
