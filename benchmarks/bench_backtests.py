"""Backtest throughput: vectorbt grid vs backtrader, and cold vs warm process start.

    .venv/bin/python benchmarks/bench_backtests.py [--symbols 100] [--fast 10] [--slow 5]
                                                   [--repeats 5] [--bt-runs 10] [--skip-cold]

Data: 1,260 sessions (five years to 2024-12-31) of the offline synthetic market
(``SyntheticSource(n_symbols=...)``, raw prices). Strategy: long-only SMA fast/slow crossover
(enter when fast crosses above slow, leave when fast < slow), decisions at the close filled at
the next open, 5 bp fees + 5 bp slippage.

1. Throughput: ``run_grid("ma_cross", fast x slow, market)``: symbols x parameter sets
   backtests in one vectorbt simulation, after an in-process warm-up; best and median of
   ``--repeats``. Timed end to end: signals, order plan, simulation, returns/equity/exposure
   frames and trade records. ``compute_metrics`` over all columns is timed separately (it is
   lazy: ``result.metrics``).
2. backtrader (the ``bench`` extra): the same SMA 20/50 strategy on ``--bt-runs`` symbols, one
   Cerebro per backtest (as a backtrader grid would run), cheat-on-open so that an all-cash
   order can be sized at the fill open, commission 5 bp, slippage 5 bp on the open. Its total
   returns are compared with ours (impact off, as backtrader has none) as a sanity check.
   The ratio is backtrader's seconds per backtest over ours (extrapolated per backtest).
3. Start-up: a fresh process imports the backtest package and vectorbt and runs one tiny
   backtest (``warm_up``), first with an empty ``NUMBA_CACHE_DIR`` (cold: numba compiles) and
   then again with the cache it left (warm).

Figures are printed, nothing is asserted: the machine is shared (load average printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from alphatwin_pipelines.backtest import CostModel, configure_numba_cache, run_backtest, run_grid, warm_up  # noqa: E402
from alphatwin_pipelines.calendar import all_sessions  # noqa: E402
from alphatwin_pipelines.sources.synthetic import SyntheticSource  # noqa: E402
from alphatwin_pipelines.strategies import Indicators, MarketArrays, StrategySpec, generate  # noqa: E402

N_SESSIONS = 1260
FAST = (5, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45)
SLOW = (50, 80, 100, 150, 200, 250)
BT_COSTS = CostModel(fees_bps=5.0, slippage_bps=5.0, impact_k_bps=0.0)


def load_market(n_symbols: int) -> tuple[MarketArrays, pd.DataFrame]:
    sessions = all_sessions()
    sessions = sessions[sessions <= "2024-12-31"][-N_SESSIONS:]
    source = SyntheticSource(n_symbols=n_symbols + n_symbols // 10)  # a few are not listed in the window
    bars = source.fetch(list(source.universe()["symbol"]), sessions).bars
    market = MarketArrays.from_bars(bars, price="raw")
    return market.select(market.symbols[:n_symbols]), bars


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- backtrader


def backtrader_run(frame: pd.DataFrame, fast: int, slow: int, cash: float = 100_000.0) -> float:
    """One backtrader backtest of the SMA crossover; returns the total return."""
    import backtrader as bt

    class SmaCross(bt.Strategy):
        def __init__(self):
            self.fast = bt.indicators.SMA(self.data.close, period=fast)
            self.slow = bt.indicators.SMA(self.data.close, period=slow)
            self.pending = None

        def next(self):  # at the close: decide
            if len(self) <= slow:
                return
            long = self.position.size > 0
            if not long and self.fast[0] > self.slow[0] and self.fast[-1] <= self.slow[-1]:
                self.pending = "buy"
            elif long and self.fast[0] < self.slow[0]:
                self.pending = "sell"

        def next_open(self):  # at the next open: act, sizing the buy with that open
            if self.pending == "buy":
                price = self.data.open[0] * (1 + 5e-4)
                # (1 - 1e-12): backtrader rejects an order that overshoots the cash by a rounding error
                self.buy(size=self.broker.getcash() / (1 + 5e-4) / price * (1 - 1e-12))
            elif self.pending == "sell":
                self.close()
            self.pending = None

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=5e-4)
    cerebro.broker.set_slippage_perc(5e-4, slip_open=True, slip_limit=True, slip_match=True, slip_out=True)
    cerebro.broker.set_checksubmit(False)
    cerebro.run()
    return cerebro.broker.getvalue() / cash - 1.0


# ---------------------------------------------------------------- start-up in a fresh process

STARTUP_SCRIPT = """
import json, time
t0 = time.perf_counter()
import alphatwin_pipelines.backtest as bt
t1 = time.perf_counter()
import vectorbt
t2 = time.perf_counter()
first = bt.warm_up()
print(json.dumps({"import_package": t1 - t0, "import_vectorbt": t2 - t1, "first_backtest": first}))
"""


def startup(cache_dir: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = wall
    return out


# ---------------------------------------------------------------- main


def main() -> None:
    configure_numba_cache()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--fast", type=int, default=10, help="how many fast windows (5 slow windows each)")
    parser.add_argument("--slow", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bt-runs", type=int, default=10)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold/warm start-up processes")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    market, bars = load_market(args.symbols)
    grid = {"fast": list(FAST[: args.fast]), "slow": list(SLOW[: args.slow])}
    n_sets = len(grid["fast"]) * len(grid["slow"])
    n_bt = n_sets * market.shape[1]
    print(f"data: {market.shape[0]} sessions x {market.shape[1]} symbols "
          f"({market.dates[0]:%Y-%m-%d}..{market.dates[-1]:%Y-%m-%d}); grid: {n_sets} parameter sets "
          f"-> {n_bt:,} backtests per run")

    # 1. throughput ------------------------------------------------------------------
    _, first = timed(warm_up)
    _, small = timed(run_grid, "ma_cross", {"fast": [5], "slow": [50]}, market)
    print(f"\nin-process warm-up: tiny backtest {first:.2f} s (includes importing vectorbt), "
          f"first {market.shape[1]}-column grid {small:.2f} s")
    times = []
    for _ in range(args.repeats):
        result, seconds = timed(run_grid, "ma_cross", grid, market)
        times.append(seconds)
    best, median = min(times), statistics.median(times)
    specs = [StrategySpec("ma_cross", {"fast": f, "slow": s}) for f in grid["fast"] for s in grid["slow"]]
    ind = Indicators(market)
    _, t_signals = timed(lambda: [generate(s, market, ind) for s in specs])
    _, t_metrics = timed(lambda: result.metrics)
    print(f"grid run ({args.repeats} repeats): best {best:.2f} s, median {median:.2f} s")
    print(f"  signal generation alone, {n_sets} specs with shared indicators: {t_signals:.2f} s")
    print(f"  backtests per second: {n_bt / best:,.0f} (best), {n_bt / median:,.0f} (median)   target >= 2,000")
    print(f"  compute_metrics over {n_bt:,} columns (lazy, not in the figure above): {t_metrics:.2f} s "
          f"({t_metrics / n_bt * 1e3:.2f} ms per column)")
    ours_per_bt = best / n_bt

    # 2. backtrader ------------------------------------------------------------------
    full = [j for j in range(market.shape[1]) if np.isfinite(market.close[:, j]).all()][: args.bt_runs]
    symbols = [market.symbols[j] for j in full]
    frames = {}
    for sym in symbols:
        f = bars[bars["symbol"] == sym].set_index("date")[["open", "high", "low", "close", "volume"]]
        frames[sym] = f.astype("float64")
    try:
        import backtrader  # noqa: F401
    except ImportError:
        print("\nbacktrader is not installed: uv pip install -e '.[bench]'")
        bt_per = None
    else:
        backtrader_run(frames[symbols[0]], 20, 50)  # import and first-call overheads
        bt_returns, bt_times = {}, []
        for sym in symbols:
            ret, seconds = timed(backtrader_run, frames[sym], 20, 50)
            bt_returns[sym] = ret
            bt_times.append(seconds)
        bt_per = sum(bt_times) / len(bt_times)
        ours = run_backtest(StrategySpec("ma_cross", {"fast": 20, "slow": 50}), market.select(symbols),
                            costs=BT_COSTS).total_return
        diff = max(abs(ours[s] - bt_returns[s]) for s in symbols)
        print(f"\nbacktrader {backtrader.__version__}: {len(symbols)} backtests of SMA 20/50, "
              f"{bt_per * 1e3:.0f} ms per backtest (min {min(bt_times) * 1e3:.0f}, max {max(bt_times) * 1e3:.0f})")
        print(f"  same total returns as ours (impact off): max |difference| {diff:.2e} over {len(symbols)} symbols")
        print(f"  ours: {ours_per_bt * 1e6:.0f} us per backtest in the grid")
        print(f"  ratio backtrader / ours per backtest: {bt_per / ours_per_bt:,.0f}x   target >= 350x")

    # 3. cold vs warm process start ----------------------------------------------------
    if not args.skip_cold:
        with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
            cold = startup(cache)
            warm = startup(cache)
        print("\nfresh process: import package / import vectorbt / first backtest / whole process")
        for name, r in (("cold (empty NUMBA_CACHE_DIR)", cold), ("warm (cache from the cold run)", warm)):
            print(f"  {name:32s} {r['import_package']:5.2f} s / {r['import_vectorbt']:5.2f} s / "
                  f"{r['first_backtest']:5.2f} s / {r['process_wall']:5.2f} s")
        print(f"  warm-up (first backtest) with the cache: {warm['first_backtest']:.2f} s vs "
              f"{cold['first_backtest']:.2f} s cold   target <= 2 s")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
