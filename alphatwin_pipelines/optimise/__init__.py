"""Optuna studies over the strategy library: objective, batched persistent studies, progress lines.

No Dagster; optuna and vectorbt are imported only when a study or backtest runs. Public API::

    objective = PortfolioObjective(market, "ma_cross", level=3, start="2024-01-02")
    result = run_study(objective, study_name("ma_cross", 3, key), "sqlite:///data/optuna.db",
                       n_trials=50, seed=42, progress=ProgressLogger(log, "ma_cross L3", 50))
    portfolio_metrics(spec, market, start, costs)   # the in-sample metrics of one spec
    # the entry the stage, walk-forward and Dask runs call: batched, seeded, resumable
    result = search(market, "ma_cross", 3, start, n_trials=500, seed=42, batch_size=32,
                    storage_url=None, progress=ProgressLogger(log, "ma_cross L3", 500))
"""

from __future__ import annotations

from alphatwin_pipelines.optimise.objective import (
    NO_TRADE_SHARPE,
    PortfolioObjective,
    estimate_sharpe,
    portfolio_metrics,
    score,
)
from alphatwin_pipelines.optimise.batched import DEFAULT_BATCH_SIZE, LoopEvaluator, run_batched_study
from alphatwin_pipelines.optimise.progress import ProgressLogger
from alphatwin_pipelines.optimise.search import EVALUATORS, make_evaluator, search
from alphatwin_pipelines.optimise.study import (
    StudyResult,
    default_storage_url,
    make_pruner,
    open_storage,
    run_study,
    study_name,
    trial_seed,
)

__all__ = [
    "DEFAULT_BATCH_SIZE", "EVALUATORS", "LoopEvaluator", "make_evaluator", "run_batched_study", "search",
    "NO_TRADE_SHARPE", "PortfolioObjective", "estimate_sharpe", "ProgressLogger", "StudyResult", "default_storage_url",
    "make_pruner", "open_storage", "portfolio_metrics", "run_study", "score", "study_name", "trial_seed",
]
