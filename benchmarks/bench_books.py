"""Cost of one optimisation trial of the book families (cross-sectional, pairs) against a per-symbol family.

Run: ``NUMBA_CACHE_DIR=.numba_cache .venv/bin/python benchmarks/bench_books.py [--symbols 100 --years 10]``

Data: a seeded random-walk market (no defects: this measures the engines, not the data path).
A "trial" is what the optimiser pays per parameter set: the objective's ``portfolio_metrics``
(targets or signals, then the simulation and the metrics) over the whole market, with a shared
indicator cache warmed by one earlier call. Peer, in the same run: ``ma_cross`` level 0, the
per-symbol family the optimiser has always run (vectorbt on each symbol's event axis).
Prints the median seconds per trial of each over ``--repeat`` calls. Timings vary with load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphatwin_pipelines.backtest import CostModel, configure_numba_cache, warm_up  # noqa: E402
from alphatwin_pipelines.optimise.objective import portfolio_metrics  # noqa: E402
from alphatwin_pipelines.strategies import Indicators, MarketArrays, StrategySpec  # noqa: E402


def random_market(n_symbols: int, years: int, seed: int = 7) -> MarketArrays:
    rng = np.random.default_rng(seed)
    T = 252 * years
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.018, size=(T, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, size=(T, n_symbols)))
    volume = rng.lognormal(13, 0.4, size=(T, n_symbols))
    return MarketArrays(open_, np.fmax(open_, close) * 1.004, np.fmin(open_, close) * 0.996, close, volume,
                        pd.bdate_range("2011-01-03", periods=T), tuple(f"S{i:03d}" for i in range(n_symbols)))


def timed(spec: StrategySpec, market: MarketArrays, ind: Indicators, start, repeat: int) -> float:
    portfolio_metrics(spec, market, start, CostModel(), ind)  # warm the cache and the compiled kernels
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        portfolio_metrics(spec, market, start, CostModel(), ind)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure_numba_cache()
    warm_up()
    market = random_market(args.symbols, args.years)
    start = market.dates[320]
    ind = Indicators(market)
    pairs = tuple((market.symbols[2 * i], market.symbols[2 * i + 1]) for i in range(5))
    cases = [("ma_cross L0 (peer)", StrategySpec("ma_cross", {}, 0)),
             ("xs_momentum L0", StrategySpec("xs_momentum", {}, 0)),
             ("xs_momentum L11", StrategySpec("xs_momentum", {}, 11)),
             ("xs_reversal L0", StrategySpec("xs_reversal", {}, 0)),
             ("pairs L0 (5 pairs)", StrategySpec("pairs", {}, 0, pairs)),
             ("pairs L11 (5 pairs)", StrategySpec("pairs", {}, 11, pairs))]
    print(f"market: {args.symbols} symbols x {len(market.dates)} sessions; median of {args.repeat} trials")
    peer = None
    for label, spec in cases:
        seconds = timed(spec, market, ind, start, args.repeat)
        peer = peer or seconds
        print(f"{label:24s} {seconds * 1000:9.1f} ms/trial   {seconds / peer:5.2f}x the peer")


if __name__ == "__main__":
    main()
