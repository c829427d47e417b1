"""Batched objective values through the fused kernel (:mod:`.kernel`): the study's hot path.

The position state comes from the compiled family rules (:func:`.signals.state_nb`, reading the
shared indicator cache), the simulation and the portfolio average from
:func:`.kernel.strategy_kernel`, the Sharpe from the same ``sharpe_ratio`` as
:func:`~.objective.portfolio_metrics`. One trial at a time through two compiled calls into the
same scratch arrays: no (B, T, N) stacks, and both calls release the GIL, so a study can ask
Optuna for the next trials while a worker thread evaluates (:mod:`.batched`). Numba and vectorbt are imported
here, so this module is imported only when a batch is evaluated.
"""

from __future__ import annotations

import numpy as np

from alphatwin_pipelines.backtest.engine import DEFAULT_INIT_CASH, _first_last_rows
from alphatwin_pipelines.backtest.orders import shift_down
from alphatwin_pipelines.optimise.kernel import strategy_kernel
from alphatwin_pipelines.optimise.signals import rule_inputs, state_nb
from alphatwin_pipelines.stats.metrics import PERIODS_PER_YEAR, sharpe_ratio
from alphatwin_pipelines.strategies.families import ffill


class MarketInputs:
    """The per-market arrays the kernel reads, built once per objective."""

    def __init__(self, market, costs, init_cash: float = DEFAULT_INIT_CASH):
        import vectorbt as vbt

        close = market.close
        self.open = np.ascontiguousarray(market.open, dtype=np.float64)
        self.close = np.ascontiguousarray(close, dtype=np.float64)
        mark = ffill(close) if not np.isfinite(close).all() else close
        self.mark = np.ascontiguousarray(np.where(np.isfinite(mark), mark, 1.0))
        self.adv = np.ascontiguousarray(shift_down(ffill(costs.adv_dollar(market)), np.nan))
        first, last = _first_last_rows(np.isfinite(close))
        self.alive_lo, self.alive_hi = first.astype(np.int64), last.astype(np.int64)
        self.init_cash = float(init_cash)
        self.notional = float(costs.impact_notional or init_cash)
        self.min_size = float(vbt.settings["portfolio"]["min_size"])


def evaluate_batch(objective, specs) -> list[float]:
    """Objective values of ``specs`` on ``objective``'s market, window and costs (see :mod:`.objective`)."""
    from alphatwin_pipelines.optimise.objective import NO_TRADE_SHARPE

    if not specs:
        return []
    inputs = getattr(objective, "_kernel_inputs", None)
    if inputs is None:
        inputs = objective._kernel_inputs = MarketInputs(objective.market, objective.costs)
    T, N = objective.market.shape
    state, held = np.empty((T, N), dtype=np.bool_), np.empty((T, N))
    state2, sparse = np.empty((T, N), dtype=np.bool_), np.empty(N, dtype=np.bool_)
    costs = objective.costs
    port = np.empty((len(specs), T - objective.first_row))
    out = []
    for b, spec in enumerate(specs):
        state_nb(inputs.close, inputs.open, *rule_inputs(spec, objective.indicators), state, held)
        trades = strategy_kernel(state, held, inputs.open, inputs.mark, inputs.adv, inputs.alive_lo, inputs.alive_hi,
                                 objective.first_row, inputs.init_cash, costs.fees, inputs.notional,
                                 float(costs.slippage_bps), float(costs.impact_k_bps), inputs.min_size, state2, sparse,
                                 port[b])
        sharpe = float(sharpe_ratio.__wrapped__(port[b][:, None], 0.0, PERIODS_PER_YEAR)[0])
        out.append(sharpe if trades > 0 and np.isfinite(sharpe) else NO_TRADE_SHARPE)
    return out


def portfolio_streams(specs, market, costs, indicators, first_rows=None) -> np.ndarray:
    """(T, K) daily returns of each spec's equal-weight book (column k: ``specs[k]`` trading from
    ``first_rows[k]``, default 0), through the same compiled pass as :func:`evaluate_batch`.

    Equal to ``reports.portfolio.simulate_portfolios`` of the specs' signals cut at their first rows
    (``objective.window_signals``): 0.0 before the first row and on sessions where no symbol has a
    bar, as the equal-weight book gives (tests/test_report_streams.py checks every family x level).
    """
    T, N = market.shape
    first_rows = [0] * len(specs) if first_rows is None else [int(r) for r in first_rows]
    inputs = MarketInputs(market, costs)
    state, held = np.empty((T, N), dtype=np.bool_), np.empty((T, N))
    state2, sparse = np.empty((T, N), dtype=np.bool_), np.empty(N, dtype=np.bool_)
    out = np.zeros((len(specs), T))
    for k, (spec, first) in enumerate(zip(specs, first_rows)):
        state_nb(inputs.close, inputs.open, *rule_inputs(spec, indicators), state, held)
        strategy_kernel(state, held, inputs.open, inputs.mark, inputs.adv, inputs.alive_lo, inputs.alive_hi, first,
                        inputs.init_cash, costs.fees, inputs.notional, float(costs.slippage_bps),
                        float(costs.impact_k_bps), inputs.min_size, state2, sparse, out[k, first:])
    out[np.isnan(out)] = 0.0  # NaN only where no symbol is alive: the equal-weight book is flat
    return out.T
