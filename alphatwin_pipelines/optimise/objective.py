"""The optimisation objective: the in-sample Sharpe of a strategy's equal-weight portfolio.

A spec runs on every shortlist symbol as an independent long-only account (costs on); the
portfolio's daily return is the mean of the symbols' daily returns on that session (symbols
without a bar that day are left out), i.e. an equal-weight book rebalanced daily. Its
annualised Sharpe (:func:`~alphatwin_pipelines.stats.compute_metrics`) is the value.

The market arrays may start before the in-sample window (``start``) so that long indicators
are warm when it opens: signals are generated on the whole market (they are causal), then
every decision before ``start`` is dropped and the state machine re-runs, so only trades
opened inside the window count and the returns are measured from ``start`` on.

A trial whose portfolio never trades (or whose Sharpe is undefined: fewer than two returns or
zero variance) scores :data:`NO_TRADE_SHARPE` = 0.0, the Sharpe of staying in cash, so the
sampler sees a finite value and prefers any strategy that earns more than cash after costs.

Pruning (multi-fidelity): before the vectorbt simulation, each trial reports a cheap NumPy
estimate of the same Sharpe (:func:`estimate_sharpe`: the resolved position filled at the next
open, fees and slippage per unit of turnover, no impact, no compounding) as step 0, so a
pruner can drop a trial whose estimate falls below the median of earlier trials without paying
for the backtest. (Symbol chunks were tried first: vectorbt's fixed cost per call made four
chunked simulations slower than one, pruned or not.) The value of a trial that runs
to the end is :func:`portfolio_metrics`' objective, bit for bit.

Book families (cross-sectional ranks, pairs) are one account across the symbols: their value is
the Sharpe of that account's daily returns from ``start`` (no decision before it), ``trades``
its fills in the window (:func:`book_metrics`). They have no cheap estimate, so they are never
pruned.

Batched studies (:func:`~.search.search`) evaluate through :meth:`PortfolioObjective.evaluate`,
one compiled pass for the whole batch (:mod:`.fast`), and do not prune: there the NumPy estimate
costs more than the evaluation it would skip (benchmarks/README.md, optimisation).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest import CostModel, simulate
from alphatwin_pipelines.strategies import Indicators, MarketArrays, Signals, StrategySpec, generate, suggest_params
from alphatwin_pipelines.strategies.spec import BOOK_FAMILIES
from alphatwin_pipelines.stats import compute_metrics

#: The value of a trial whose portfolio never trades or has no defined Sharpe (cash).
NO_TRADE_SHARPE = 0.0
#: Families the fused kernel evaluates: long-only, one independent account per symbol, signals from
#: ``generate_state`` in the compiled form of :mod:`.signals`. A family added elsewhere runs through the per-trial fallback until it is
#: listed here (after the equality test covers it) or registers its own evaluator (``search.EVALUATORS``).
KERNEL_FAMILIES = frozenset({"ma_cross", "rsi_reversion", "bollinger_reversion", "ts_momentum", "donchian_breakout",
                             "adx_trend", "volume_momentum"})

#: Trials a batched study hands to its evaluation thread at a time (see ``stream_chunk``).
STREAM_CHUNK = 4


def start_row(market: MarketArrays, start) -> int:
    """The first row of the in-sample window (sessions before it only warm indicators up)."""
    row = int(market.dates.searchsorted(pd.Timestamp(start), side="left"))
    if row >= len(market.dates):
        raise ValueError(f"the in-sample window starts at {pd.Timestamp(start):%Y-%m-%d}, after the last bar "
                         f"({market.dates[-1]:%Y-%m-%d}) of the market")
    return row


def window_signals(signals: Signals, first_row: int, columns=None) -> Signals:
    """``signals`` (of some ``columns``) without any decision before ``first_row``, unresolved."""
    cols = slice(None) if columns is None else columns
    entries, exits = signals.entries[:, cols].copy(), signals.exits[:, cols].copy()
    entries[:first_row] = False
    exits[:first_row] = False
    return Signals(entries, exits, signals.size[:, cols], resolved=False)


def portfolio_returns(returns: np.ndarray, first_row: int) -> pd.Series:
    """Daily mean of the symbols' returns from ``first_row`` on (NaN where no symbol trades)."""
    window = returns[first_row:]
    alive = np.isfinite(window)
    count = alive.sum(axis=1)
    total = np.where(alive, window, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(np.where(count > 0, total / np.maximum(count, 1), np.nan))


def score(metrics: dict) -> float:
    """The objective value of a metrics dict (``sharpe``, ``trades``): see the module docstring."""
    sharpe = metrics["sharpe"]
    return float(sharpe) if metrics["trades"] > 0 and math.isfinite(sharpe) else NO_TRADE_SHARPE


def _backtest_metrics(signals: Signals, market: MarketArrays, first_row: int, costs: CostModel | None) -> dict:
    result = simulate(window_signals(signals, first_row), market, costs)
    out = compute_metrics(portfolio_returns(result.returns.to_numpy(), first_row))
    out["trades"] = float(len(result.trades))
    out["objective"] = score(out)
    return out


def portfolio_metrics(spec: StrategySpec, market: MarketArrays, start, costs: CostModel | None = None,
                      indicators: Indicators | None = None) -> dict:
    """In-sample metrics of ``spec``'s equal-weight portfolio on ``market`` from ``start``.

    ``compute_metrics`` of the portfolio returns plus ``trades`` (trades opened in the window,
    over all symbols) and ``objective`` (:func:`score`). The stage and
    ``reproducibility.replay_metrics`` both call this, so a replay is bit-identical.
    """
    if spec.family in BOOK_FAMILIES:
        return book_metrics(spec, market, start_row(market, start), costs, indicators)
    return _backtest_metrics(generate(spec, market, indicators), market, start_row(market, start), costs)


def book_metrics(spec: StrategySpec, market: MarketArrays, first_row: int, costs: CostModel | None = None,
                 indicators: Indicators | None = None) -> dict:
    """In-sample metrics of a book family's account from ``first_row`` (module docstring)."""
    from alphatwin_pipelines.backtest.book import simulate_book
    from alphatwin_pipelines.strategies.books import generate_book

    result = simulate_book(generate_book(spec, market, indicators, first_row), market, costs)
    out = compute_metrics(result.returns.iloc[first_row:].reset_index(drop=True))
    out["trades"] = float(len(result.orders))
    out["objective"] = score(out)
    return out


def estimate_sharpe(signals: Signals, market: MarketArrays, first_row: int, costs: CostModel) -> float:
    """A cheap estimate of the objective from resolved signals (module docstring), scored the same way."""
    held = np.array(signals.size)  # resolved signals: the fraction held after each close, 0 when flat
    held[:first_row] = 0.0
    before = np.vstack([np.zeros((1, held.shape[1])), held[:-1]])  # the position held into each close
    open_, close = market.open, market.close
    with np.errstate(invalid="ignore", divide="ignore"):
        overnight, intraday = open_[1:] / close[:-1] - 1.0, close[1:] / open_[1:] - 1.0
    # A decision at the close of t fills at the open of t + 1: the old position rides the gap.
    per_symbol = np.full(close.shape, np.nan)
    per_symbol[1:] = (before[:-1] * overnight + held[:-1] * intraday
                      - np.abs(held[:-1] - before[:-1]) * (costs.fees + costs.slippage_bps * 1e-4))
    metrics = compute_metrics(portfolio_returns(per_symbol, first_row))
    metrics["trades"] = float(signals.entries[first_row:].sum())
    return score(metrics)


class PortfolioObjective:
    """``objective(trial) -> float`` for Optuna: one family and level on one market.

    Holds an :class:`Indicators` cache for the market (pass one to share it between the studies
    of a run), so moving averages, bands and filters are computed once per window length. With
    ``prune_on_estimate`` the trial reports :func:`estimate_sharpe` first and asks the pruner.
    """

    def __init__(self, market: MarketArrays, family: str, level: int, start, costs: CostModel | None = None,
                 prune_on_estimate: bool = True, indicators: Indicators | None = None, pairs=()):
        self.market, self.family, self.level = market, family, int(level)
        self.pairs = tuple(pairs)  # the pairs family's traded pairs (part of its spec)
        self.prune_on_estimate = bool(prune_on_estimate)
        self.costs = CostModel() if costs is None else costs
        self.first_row = start_row(market, start)
        self.indicators = Indicators(market) if indicators is None else indicators

    def spec(self, params: dict) -> StrategySpec:
        return StrategySpec(self.family, params, self.level, self.pairs)

    def suggest(self, trial) -> dict:
        """The parameters an Optuna ``trial`` draws for this family and level."""
        return suggest_params(trial, self.family, self.level)

    def value(self, params: dict) -> float:
        """The objective of one parameter set: the backtest engine's portfolio Sharpe, scored."""
        if self.family in BOOK_FAMILIES:
            return book_metrics(self.spec(params), self.market, self.first_row, self.costs, self.indicators)["objective"]
        signals = generate(self.spec(params), self.market, self.indicators)
        return _backtest_metrics(signals, self.market, self.first_row, self.costs)["objective"]

    @property
    def stream_chunk(self) -> int:
        """Trials per hand-over to a batched study's evaluation thread (:mod:`.batched`): the fused
        kernel releases the GIL while TPE asks; the per-trial fallback would not overlap (0: off)."""
        return STREAM_CHUNK if self.family in KERNEL_FAMILIES else 0

    def evaluate(self, params_list: list[dict]) -> list[float]:
        """``[value(p) for p in params_list]``: one compiled pass (:mod:`.fast`) for the families in
        :data:`KERNEL_FAMILIES`, whose values equal :meth:`value`'s float for float (a test checks
        it); any other family loops :meth:`value` (the per-trial fallback)."""
        if self.family not in KERNEL_FAMILIES:
            return [self.value(p) for p in params_list]
        from alphatwin_pipelines.optimise.fast import evaluate_batch

        return evaluate_batch(self, [self.spec(p) for p in params_list])

    def __call__(self, trial) -> float:
        import optuna

        spec = self.spec(suggest_params(trial, self.family, self.level))
        if self.family in BOOK_FAMILIES:
            metrics = book_metrics(spec, self.market, self.first_row, self.costs, self.indicators)
            trial.set_user_attr("trades", int(metrics["trades"]))
            return metrics["objective"]
        signals = generate(spec, self.market, self.indicators)
        if self.prune_on_estimate:
            estimate = estimate_sharpe(signals, self.market, self.first_row, self.costs)
            trial.set_user_attr("estimate", estimate)
            trial.report(estimate, 0)
            if trial.should_prune():
                raise optuna.TrialPruned(f"estimated Sharpe {estimate:.3f} is below the median of earlier trials")
        metrics = _backtest_metrics(signals, self.market, self.first_row, self.costs)
        trial.set_user_attr("trades", int(metrics["trades"]))
        return metrics["objective"]
