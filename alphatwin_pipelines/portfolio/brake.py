"""Drawdown brake: scale the allocation's exposure down while its drawdown exceeds a limit.

The brake watches the drawdown of the allocation itself (the current strategy weights applied
to the strategies' out-of-sample daily returns), not of the braked book: a braked book recovers
more slowly than the allocation it scales, so watching it would keep the brake on long after the
strategies had recovered.

Scale for session t+1, from the drawdown ``d`` at the close of t (nothing later is read)::

    scale = 1                                          while d <= limit
    scale = max(floor, 1 - (1 - floor) * (d - limit) / span)   beyond it (span defaults to limit)

so exposure falls linearly from full at ``limit`` to ``floor`` at ``limit + span`` and returns
as the drawdown heals. The rest sits in cash at zero return. Changing the scale trades the whole
book: each change costs ``|Δscale| × gross exposure × cost_per_turnover``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.backtest import CostModel
from alphatwin_pipelines.stats import compute_metrics
from alphatwin_pipelines.stats.metrics import drawdown

#: The figures the backtest compares, with and without the brake.
SUMMARY_METRICS = ("total_return", "cagr", "volatility", "sharpe", "max_drawdown", "max_drawdown_duration")


@dataclass(frozen=True)
class DrawdownBrake:
    """``limit``: drawdown (0.10 = 10 % below the peak) at which the brake starts; ``floor``: the
    smallest exposure scale; ``span``: the further drawdown over which exposure falls to ``floor``
    (default ``limit``)."""

    limit: float = 0.10
    floor: float = 0.25
    span: float | None = None

    def __post_init__(self):
        if not 0.0 < self.limit < 1.0:
            raise ValueError(f"drawdown brake limit must be in (0, 1), got {self.limit}: e.g. 0.10 for 10 %")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"drawdown brake floor must be in [0, 1], got {self.floor}: 0 goes fully to cash")
        if self.span is not None and not self.span > 0.0:
            raise ValueError(f"drawdown brake span must be > 0, got {self.span}; leave it unset to use the limit")

    def scale(self, dd) -> np.ndarray:
        """The exposure scale for a drawdown (array-wise)."""
        dd = np.asarray(dd, dtype=float)
        span = self.limit if self.span is None else self.span
        beyond = np.clip((dd - self.limit) / span, 0.0, 1.0)
        return 1.0 - (1.0 - self.floor) * beyond


@dataclass(frozen=True)
class BrakeBacktest:
    """The allocation's daily returns with and without the brake, the scale applied each session."""

    returns: pd.Series
    braked: pd.Series
    scale: pd.Series  # the scale applied to each session's return (decided at the previous close)
    current_scale: float  # for the session after the last one: what the next execution uses
    drawdown: float  # the allocation's drawdown at the last close

    def summary(self) -> pd.DataFrame:
        rows = {"without brake": compute_metrics(self.returns), "with brake": compute_metrics(self.braked)}
        table = pd.DataFrame({name: {k: m[k] for k in SUMMARY_METRICS} for name, m in rows.items()}).T
        table["sessions_braked"] = [0, int((self.scale < 1.0).sum())]
        return table


def allocation_returns(matrix: pd.DataFrame, weights: pd.Series) -> pd.Series:
    """Daily returns of ``weights`` (per strategy) over the strategies' return ``matrix`` (NaN = flat)."""
    aligned = matrix.reindex(columns=weights.index)
    return pd.Series(aligned.fillna(0.0).to_numpy() @ weights.to_numpy(dtype=float), index=matrix.index,
                     name="return")


def backtest_brake(returns: pd.Series, brake: DrawdownBrake, cost_per_turnover: float | None = None,
                   gross: float = 1.0) -> BrakeBacktest:
    """Run ``brake`` over ``returns`` causally (the module docstring); inputs are not modified."""
    if cost_per_turnover is None:
        costs = CostModel()
        cost_per_turnover = costs.fees + costs.slippage_bps * 1e-4
    r = returns.astype(float).fillna(0.0)
    dd = drawdown(r).to_numpy()
    decided = brake.scale(dd)  # at each close, for the next session
    applied = np.concatenate([[1.0], decided[:-1]])
    change = np.abs(np.diff(np.concatenate([[1.0], applied])))
    braked = applied * r.to_numpy() - change * abs(gross) * cost_per_turnover
    return BrakeBacktest(
        returns=r, braked=pd.Series(braked, index=r.index, name="return"),
        scale=pd.Series(applied, index=r.index, name="scale"),
        current_scale=float(decided[-1]) if len(decided) else 1.0,
        drawdown=float(dd[-1]) if len(dd) else 0.0)
