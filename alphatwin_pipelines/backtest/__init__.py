"""Backtests of strategy signals with vectorbt, costs on by default.

vectorbt is imported lazily, on the first backtest. Importing this package changes nothing
in the process: a process that backtests calls :func:`configure_numba_cache` first, so that
vectorbt's compiled kernels are reused by later processes. Public API::

    run_backtest(spec_or_signals, market, costs=CostModel(), init_cash=100_000, fill="next_open")
    run_grid(family, {"fast": [10, 20], "slow": [50, 100]}, market, level=0)
    run_specs([spec, ...], market); run_random(family, level, n, market, seed)
    -> BacktestResult(returns, value, exposure, positions, trades, orders, metrics, total_return, ...)

Fill convention: a signal at the close of t fills at the open of t + 1 (see ``orders``).
"""

from __future__ import annotations

from alphatwin_pipelines.backtest.costs import CostModel
from alphatwin_pipelines.backtest.engine import (
    DEFAULT_INIT_CASH,
    BacktestResult,
    run_backtest,
    run_grid,
    run_random,
    run_specs,
    simulate,
    warm_up,
)
from alphatwin_pipelines.backtest.orders import FILLS, OrderPlan, account, plan_orders
from alphatwin_pipelines.numba_cache import configure_numba_cache

__all__ = [
    "DEFAULT_INIT_CASH", "FILLS", "BacktestResult", "CostModel", "OrderPlan", "account", "configure_numba_cache",
    "plan_orders", "run_backtest", "run_grid", "run_random", "run_specs", "simulate", "warm_up",
]
