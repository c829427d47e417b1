"""The one public entry of the optimiser: :func:`search` (one family x level study, batched).

The optimisation stage, walk-forward re-optimisation and the Dask runner all call ``search``;
they differ only in the market slice, the budget and where the study is stored.
"""

from __future__ import annotations

from typing import Callable

from alphatwin_pipelines.optimise.batched import DEFAULT_BATCH_SIZE, LoopEvaluator, run_batched_study
from alphatwin_pipelines.optimise.study import StudyResult

#: family -> ``factory(market, family, level, start, costs, indicators)`` returning an evaluator
#: (``suggest(trial) -> dict``, ``evaluate(list[dict]) -> list[float]``). Families without an entry
#: use :class:`~.objective.PortfolioObjective` (vectorised for the single-asset families).
EVALUATORS: dict[str, Callable] = {}


def make_evaluator(market, family: str, level: int, start, costs=None, indicators=None, pairs=()):
    """The evaluator of ``family``: a registered factory, else the portfolio objective (``pairs``: the
    pairs family's traded pairs)."""
    from alphatwin_pipelines.optimise.objective import PortfolioObjective

    factory = EVALUATORS.get(family)
    if factory is not None:
        return factory(market, family, level, start, costs, indicators)
    return PortfolioObjective(market, family, level, start, costs, prune_on_estimate=False, indicators=indicators,
                              pairs=pairs)


def search(market, family: str, level: int, start, n_trials: int, seed: int, batch_size: int = DEFAULT_BATCH_SIZE,
           costs=None, storage_url: str | None = None, name: str | None = None, indicators=None,
           progress=None, n_startup_trials: int = 10, evaluator=None, user_attrs: dict | None = None) -> StudyResult:
    """Search ``family`` at complexity ``level`` on ``market`` for ``n_trials`` trials; the best in-sample Sharpe.

    * ``market``: :class:`~alphatwin_pipelines.strategies.MarketArrays`, possibly starting before
      ``start`` so indicators are warm; only trades opened from ``start`` on count (see
      :mod:`.objective`). ``costs``: a :class:`~alphatwin_pipelines.backtest.CostModel` (None = default).
    * ``seed`` and ``batch_size`` fix the trials: the same pair gives the same parameters and values.
      Trials are asked ``batch_size`` at a time from a seeded TPE sampler with ``constant_liar``
      and evaluated together (:mod:`.batched`).
    * ``storage_url``: an Optuna RDB URL (SQLite or PostgreSQL) to persist and resume the study
      under ``name``; None runs it in memory (``name`` is then only a label).
    * ``indicators``: an :class:`~alphatwin_pipelines.strategies.Indicators` of ``market`` to share
      between studies (levels reuse the same moving averages and filters).
    * ``progress``: called as ``progress(study, trial)`` after each trial
      (:class:`~.progress.ProgressLogger` writes lines with the time left).
    * ``evaluator``: override the family's evaluator (anything with ``suggest`` and ``evaluate``);
      a plain callable ``params -> float`` is wrapped in :class:`~.batched.LoopEvaluator`.

    Returns a :class:`~.study.StudyResult` (best parameters and value, every trial).
    """
    if evaluator is None:
        evaluator = make_evaluator(market, family, level, start, costs, indicators)
    elif not hasattr(evaluator, "evaluate"):
        from alphatwin_pipelines.strategies import suggest_params

        evaluator = LoopEvaluator(evaluator, lambda trial: suggest_params(trial, family, level))
    label = name or f"alphatwin/{family}/L{int(level)}/memory"
    return run_batched_study(evaluator, label, storage_url, int(n_trials), int(seed), batch_size=batch_size,
                             n_startup_trials=n_startup_trials, progress=progress, user_attrs=user_attrs)
