"""Relative performance against a benchmark over the same sessions.

The information ratio here is computed on daily **log** active returns,
``log(1 + r_strategy) - log(1 + r_benchmark)``, annualised: ``mean / std (ddof=1) * sqrt(252)``.
Log returns add up over time, so the ratio is positive exactly when the strategy's compounded
return over the sessions beats the benchmark's: a strategy that returned 22 % while the
benchmark returned 93 % has a negative ratio whatever its own Sharpe.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from alphatwin_pipelines.stats.metrics import PERIODS_PER_YEAR

__all__ = ["active_log_returns", "information_ratio"]


def active_log_returns(returns: pd.Series, benchmark: pd.Series) -> pd.Series:
    """Daily log active returns on the strategy's sessions (a session without a benchmark return is flat)."""
    strategy = pd.Series(returns, dtype=float).dropna()
    bench = pd.Series(benchmark, dtype=float).reindex(strategy.index).fillna(0.0)
    return np.log1p(strategy) - np.log1p(bench)


def information_ratio(returns: pd.Series, benchmark: pd.Series, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualised mean over std of the daily log active returns (module docstring); NaN if undefined."""
    active = active_log_returns(returns, benchmark).to_numpy()
    if len(active) < 2:
        return math.nan
    std = float(np.std(active, ddof=1))
    if not std > 0:
        return math.nan
    return float(np.mean(active) / std * math.sqrt(periods_per_year))
