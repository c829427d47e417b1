"""Our side of ``bench_alpha.py``: the project's alpha engine, the functions the ``alpha_labels`` /
``alpha_models`` / ``alpha_predictions`` stages call, on in-memory tables instead of partitions.

* build: ``compute_features`` (the ``features`` stage's engine), ``compute_labels`` (``alpha_labels``'s),
  then ``training_set`` (what ``train_version`` reads: labels of the horizon known strictly before
  the cutoff, on the last ``train_sessions`` decision sessions, joined to their features, with the
  per-session rank target) for the train segment, and the test segment's feature rows.
  Reading and writing the partitions is not timed (Qlib's side starts from its binary files too).
* train without search: ``models.fit`` with ``FIXED_PARAMS`` (the engine's LightGBM, single-threaded).
* train with search: ``train_version`` (purged K-fold CV with an embargo + the seeded Optuna study
  on a fresh SQLite storage, then the final fit), ``n_trials`` trials.
* predict: the scores of ``predict_session`` (``model.predict`` on the test rows) in one batch; the
  per-session SHAP explanations ``alpha_predictions`` adds are timed apart on a sample of sessions.

The cutoff is the first session of the validation segment, so the model learns 2008-2014 only
(labels known before 2015); the validation segment is scored, not learnt (the engine selects by
purged CV inside the training window, not by early stopping on a later segment).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

# The engine's LightGBM (models.make_model: 63 bins, row subsampling 0.8) with a fixed setting for
# the no-search fit: shallow trees and many rows per leaf, as daily cross-sectional ranks are noisy.
FIXED_PARAMS = {"kind": "lightgbm", "num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 400,
                "colsample_bytree": 0.8}
N_ESTIMATORS = 100


class OurPipeline:
    name = "ours (alpha engine)"

    def __init__(self, split: dict, n_trials: int, work: Path, explain_sessions: int = 20):
        self.split, self.n_trials, self.work, self.explain_sessions = split, n_trials, work, explain_sessions

    def build_dataset(self, adjusted: pd.DataFrame, horizon: int) -> dict:
        from alphatwin_pipelines.alpha.dataset import model_features, training_set
        from alphatwin_pipelines.alpha.labels import compute_labels
        from alphatwin_pipelines.calendar import sessions_between
        from alphatwin_pipelines.features import compute_features

        first, last = self.split["features"]
        features = compute_features(adjusted, sessions_between(first, last))
        features = features[features["date"] >= first].reset_index(drop=True)
        # Every label whose exit open falls in the feature span (the h + 1 sessions after it are not read).
        labels = compute_labels(adjusted[["symbol", "date", "adj_open"]], sessions_between(first, last), (horizon,))
        names = model_features()
        cutoff = sessions_between(*self.split["valid"])[0]
        train_sessions = len(sessions_between(*self.split["train"]))
        data = training_set(features, labels, horizon, cutoff, train_sessions, names)
        test = features[(features["date"] >= self.split["test"][0]) & (features["date"] <= self.split["test"][1])]
        test = test[["date", "symbol", *names]].merge(labels[["date", "symbol", "fwd_return"]], on=["date", "symbol"],
                                                      how="left").rename(columns={"fwd_return": "label"})
        return {"features": features, "labels": labels, "names": names, "cutoff": cutoff, "horizon": horizon,
                "train_sessions": train_sessions, "data": data, "test": test.reset_index(drop=True)}

    def feature_columns(self, dataset: dict) -> list[str]:
        return dataset["names"]

    def train(self, dataset: dict):
        from alphatwin_pipelines.alpha.models import fit

        data = dataset["data"]
        return fit(FIXED_PARAMS, data.X, data.y, seed=16, n_estimators=N_ESTIMATORS)

    def train_search(self, dataset: dict):
        """``train_version`` with a fresh study (a stored one would resume and run no trial)."""
        from alphatwin_pipelines.alpha.training import AlphaTrainingConfig, train_version

        self.work.mkdir(parents=True, exist_ok=True)
        storage = self.work / f"optuna_h{dataset['horizon']}.db"
        storage.unlink(missing_ok=True)
        settings = AlphaTrainingConfig(horizons=(dataset["horizon"],), train_sessions=dataset["train_sessions"],
                                       n_trials=self.n_trials, n_estimators=N_ESTIMATORS)
        return train_version(dataset["features"], dataset["labels"], dataset["horizon"], dataset["cutoff"],
                             dataset["names"], settings, f"sqlite:///{storage}")

    def predict(self, model, dataset: dict) -> pd.DataFrame:
        test = dataset["test"]
        score = np.asarray(model.predict(test[dataset["names"]].to_numpy(dtype=float)), dtype=float)
        return pd.DataFrame({"date": test["date"].to_numpy(), "symbol": test["symbol"].astype(str).to_numpy(),
                             "score": score, "label": test["label"].to_numpy()})

    def explain_seconds(self, model, dataset: dict) -> tuple[float, int]:
        """Wall seconds per session of ``predict_session`` (scores + SHAP top-3 + sentences) over
        ``explain_sessions`` evenly spaced test sessions."""
        from alphatwin_pipelines.alpha.predict import predict_session

        test = dataset["test"]
        days = np.sort(test["date"].unique())
        days = days[np.linspace(0, len(days) - 1, self.explain_sessions).astype(int)]
        t0 = time.perf_counter()
        for day in days:
            predict_session(test[test["date"] == day], day, dataset["horizon"], "bench", model, dataset["names"])
        return (time.perf_counter() - t0) / len(days), len(days)

    def valid_predictions(self, model, dataset: dict) -> pd.DataFrame:
        features, labels, names = dataset["features"], dataset["labels"], dataset["names"]
        rows = features[(features["date"] >= self.split["valid"][0]) & (features["date"] <= self.split["valid"][1])]
        rows = rows[["date", "symbol", *names]].merge(labels[["date", "symbol", "fwd_return"]], on=["date", "symbol"])
        return pd.DataFrame({"date": rows["date"].to_numpy(), "symbol": rows["symbol"].astype(str).to_numpy(),
                             "score": model.predict(rows[names].to_numpy(dtype=float)),
                             "label": rows["fwd_return"].to_numpy()})
