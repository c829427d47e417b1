"""Model selection and hyperparameters: a seeded Optuna study scored by purged K-fold CV.

Each trial picks a kind (linear or LightGBM) and its hyperparameters; its value is the mean,
over the folds, of the test fold's mean daily rank IC. The study lives on the project's RDB
storage (``optimise.study``), is named after a hash of its inputs and resumes like the strategy
studies: a re-run on unchanged data runs no trial and returns the same best parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from alphatwin_pipelines.alpha.cv import purged_kfold
from alphatwin_pipelines.alpha.dataset import TrainingSet
from alphatwin_pipelines.alpha.models import BASELINE_PARAMS, daily_ic, fit


@dataclass(frozen=True)
class CVSettings:
    folds: int
    embargo: int  # sessions after each test block left out of training (the purge comes from the labels)
    seed: int
    n_estimators: int


@dataclass
class CVScore:
    rank_ic: float  # mean over folds of the test fold's mean daily rank IC
    ic: float
    rank_icir: float  # mean / std of the daily rank IC over every test session
    sessions: int


def cross_validate(data: TrainingSet, params: dict, cv: CVSettings, report=None) -> CVScore:
    """Purged K-fold score of ``params``; ``report(step, value)`` after each fold (Optuna pruning)."""
    fold_rank, fold_ic, daily = [], [], []
    for k, (train, test) in enumerate(purged_kfold(data.date_ord, data.available_ord, cv.folds, cv.embargo)):
        if len(train) == 0:
            raise ValueError(f"fold {k} has no training row left after the purge and embargo: widen the window")
        model = fit(params, data.X[train], data.y[train], cv.seed, cv.n_estimators)
        ics = daily_ic(data.dates[test], model.predict(data.X[test]), data.fwd_return[test])
        fold_rank.append(float(ics["rank_ic"].mean()))
        fold_ic.append(float(ics["ic"].mean()))
        daily.append(ics["rank_ic"].to_numpy())
        if report is not None:
            report(k, float(np.mean(fold_rank)))
    every = np.concatenate(daily) if daily else np.array([])
    sd = float(np.nanstd(every, ddof=1)) if every.size > 1 else np.nan
    return CVScore(float(np.nanmean(fold_rank)), float(np.nanmean(fold_ic)),
                   float(np.nanmean(every) / sd) if sd and np.isfinite(sd) else np.nan, int(every.size))


def suggest(trial, n_estimators: int) -> dict:
    kind = trial.suggest_categorical("kind", ["linear", "lightgbm"])
    if kind == "linear":
        return {"kind": kind, "alpha": trial.suggest_float("alpha", 1e-2, 1e4, log=True)}
    return {"kind": kind, "num_leaves": trial.suggest_int("num_leaves", 4, 31),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0), "n_estimators": n_estimators}


def data_digest(data: TrainingSet) -> str:
    digest = hashlib.sha256()
    for part in (data.X, data.y, data.date_ord, data.available_ord):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(json.dumps(data.names).encode())
    return digest.hexdigest()


@dataclass
class SearchResult:
    params: dict
    score: CVScore
    baseline: CVScore
    study_name: str
    n_trials: int
    trials_run: int


def search(data: TrainingSet, horizon: int, cv: CVSettings, n_trials: int, storage_url: str) -> SearchResult:
    """Run (or resume) the study for this training set and re-score its best parameters."""
    import optuna

    from alphatwin_pipelines.optimise.study import run_study

    key = hashlib.sha256(json.dumps([data_digest(data), horizon, cv.__dict__], sort_keys=True).encode()).hexdigest()

    def objective(trial) -> float:
        def report(step, value):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        value = cross_validate(data, suggest(trial, cv.n_estimators), cv, report).rank_ic
        return value if np.isfinite(value) else -1.0

    name = f"alphatwin/alpha_models/H{horizon}/{key[:12]}"
    result = run_study(objective, name, storage_url, n_trials, cv.seed, n_startup_trials=min(n_trials, 10),
                       pruner_startup=max(n_trials, 5), user_attrs={"horizon": horizon, "cv": cv.__dict__})
    params = dict(result.best_params)
    if params["kind"] == "lightgbm":
        params["n_estimators"] = cv.n_estimators
    return SearchResult(params, cross_validate(data, params, cv), cross_validate(data, BASELINE_PARAMS, cv),
                        name, result.n_trials, result.ran)
