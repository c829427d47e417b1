"""Backtest statistics: how good a backtest really is, after counting what was tried.

* :mod:`.metrics` - Sharpe, Sortino, CAGR, drawdowns, win rate, ... vectorised over strategies,
  each with a plain-English line from :func:`explain`.
* :mod:`.deflated_sharpe` - Probabilistic and Deflated Sharpe Ratios (Bailey & López de Prado).
* :mod:`.pbo` - Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu).
* :mod:`.walk_forward` - rolling/anchored walk-forward windows and re-optimisation.
* :mod:`.benchmark` - the information ratio against a benchmark (log active returns).
"""

from __future__ import annotations

from alphatwin_pipelines.stats.benchmark import active_log_returns, information_ratio
from alphatwin_pipelines.stats.deflated_sharpe import (
    DeflatedSharpe,
    annual_to_per_period,
    deflate_trials,
    deflated_sharpe_ratio,
    deflated_sharpe_ratio_from_returns,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_ratio_std,
)
from alphatwin_pipelines.stats.metrics import (
    avg_holding_period,
    cagr,
    compute_metrics,
    drawdown,
    explain,
    exposure,
    kurtosis,
    max_drawdown,
    max_drawdown_duration,
    n_trades,
    profit_factor,
    sharpe_ratio,
    skewness,
    sortino_ratio,
    total_return,
    volatility,
    win_rate,
)
from alphatwin_pipelines.stats.pbo import PBOResult, probability_of_backtest_overfitting
from alphatwin_pipelines.stats.walk_forward import (
    WalkForwardResult,
    Window,
    walk_forward,
    walk_forward_windows,
)

__all__ = [
    "DeflatedSharpe", "PBOResult", "WalkForwardResult", "Window", "active_log_returns", "annual_to_per_period",
    "avg_holding_period", "cagr", "compute_metrics", "deflate_trials", "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_returns", "drawdown", "explain", "expected_max_sharpe",
    "exposure", "information_ratio", "kurtosis", "max_drawdown", "max_drawdown_duration", "n_trades",
    "probabilistic_sharpe_ratio", "probability_of_backtest_overfitting", "profit_factor",
    "sharpe_ratio", "sharpe_ratio_std", "skewness", "sortino_ratio", "total_return",
    "volatility", "walk_forward", "walk_forward_windows", "win_rate",
]
