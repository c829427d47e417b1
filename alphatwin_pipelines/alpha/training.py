"""One model version per horizon: search, final fit, content hash and reproducibility record."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field

import pandas as pd

from alphatwin_pipelines.alpha.dataset import TrainingSet, training_set
from alphatwin_pipelines.alpha.models import fit, importance
from alphatwin_pipelines.alpha.search import CVSettings, SearchResult, data_digest, search
from alphatwin_pipelines.reproducibility import code_version, library_versions

RECORD_VERSION = 1
_ML_LIBRARIES = {"lightgbm": "lightgbm", "sklearn": "scikit-learn", "shap": "shap", "mlflow": "mlflow-skinny"}


@dataclass(frozen=True)
class AlphaTrainingConfig:
    """How ``alpha_models`` trains. The defaults keep ``make run`` small (two horizons, a few
    trials, shallow forests); raise ``n_trials``, ``train_sessions`` and ``n_estimators`` for research."""

    horizons: tuple[int, ...] = (1, 5)
    train_sessions: int = 60  # decision sessions in the rolling training window
    folds: int = 3
    embargo: int = 5  # sessions; the purge (the label's own span, 1 + horizon sessions) comes on top
    n_trials: int = 4
    n_estimators: int = 40
    seed: int = 16
    as_of: str | None = None  # the cutoff (labels known strictly before it); None: the latest feature session

    def cv(self) -> CVSettings:
        return CVSettings(folds=self.folds, embargo=self.embargo, seed=self.seed, n_estimators=self.n_estimators)


@dataclass
class ModelVersion:
    version: str  # first 16 hex digits of ``content_hash``
    content_hash: str
    horizon: int
    cutoff: pd.Timestamp
    data: TrainingSet
    found: SearchResult
    model: object = None
    record: dict = field(default_factory=dict)

    @property
    def importance(self) -> dict[str, float]:
        return importance(self.model, self.data.names)

    def artifact_bytes(self) -> bytes:
        return pickle.dumps(self.model, protocol=5)


def content_hash(data: TrainingSet, horizon: int, cutoff, params: dict, seed: int, code: str) -> str:
    """sha256 of the data range (and its digest), feature list, parameters and code version."""
    payload = {"horizon": horizon, "cutoff": f"{pd.Timestamp(cutoff):%Y-%m-%d}",
               "data_range": [f"{data.first_date:%Y-%m-%d}", f"{data.last_date:%Y-%m-%d}",
                              f"{data.labels_known_through:%Y-%m-%d}"],
               "data_digest": data_digest(data), "features": data.names, "params": params, "seed": seed,
               "code_version": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_version(features: pd.DataFrame, labels: pd.DataFrame, horizon: int, cutoff, names: list[str],
                  settings: AlphaTrainingConfig, storage_url: str, inputs: dict | None = None,
                  fit_model: bool = True) -> ModelVersion:
    """Search, hash and (``fit_model``) fit the model of ``horizon`` with ``cutoff``."""
    data = training_set(features, labels, horizon, cutoff, settings.train_sessions, names)
    found = search(data, horizon, settings.cv(), settings.n_trials, storage_url)
    code = code_version()
    digest = content_hash(data, horizon, cutoff, found.params, settings.seed, code)
    version = ModelVersion(digest[:16], digest, horizon, pd.Timestamp(cutoff), data, found)
    version.record = {
        "record_version": RECORD_VERSION, "model_version": version.version, "content_hash": digest,
        "code_version": code, "libraries": {**library_versions(), **_ml_library_versions()},
        "horizon": horizon, "cutoff": f"{pd.Timestamp(cutoff):%Y-%m-%d}",
        "train_start": f"{data.first_date:%Y-%m-%d}", "train_end": f"{data.last_date:%Y-%m-%d}",
        "labels_known_through": f"{data.labels_known_through:%Y-%m-%d}", "rows": data.rows,
        "train_sessions": settings.train_sessions, "data_digest": data_digest(data),
        "features": data.names, "params": found.params, "seeds": {"model": settings.seed, "study": settings.seed},
        "cv": {**settings.cv().__dict__, "purge": "each label's span [date, available] (1 + horizon sessions)"},
        "study": found.study_name, "inputs": dict(sorted((inputs or {}).items())),
    }
    if fit_model:
        version.model = fit(found.params, data.X, data.y, settings.seed, settings.n_estimators)
    return version


def replay_model(record: dict | str, data_dir):
    """Re-fit the model of a reproducibility record from ``data_dir`` (no search: the record's
    parameters). Returns (model, training set); raises ``AlphaInputError`` naming the version
    when the stored inputs no longer give the same training data (see the record's ``inputs``)."""
    from alphatwin_pipelines.alpha.dataset import AlphaInputError, read_training_inputs
    from alphatwin_pipelines.storage import TableStore

    if isinstance(record, str):
        record = json.loads(record)
    horizon, cutoff, names = int(record["horizon"]), pd.Timestamp(record["cutoff"]), list(record["features"])
    features, labels = read_training_inputs(TableStore(data_dir), cutoff, record["train_sessions"], (horizon,), names)
    data = training_set(features, labels, horizon, cutoff, record["train_sessions"], names)
    if data_digest(data) != record["data_digest"]:
        raise AlphaInputError(f"cannot replay model version {record['model_version']}: the training data under "
                              f"{data_dir} differ from the record's; compare the partitions' sha256 with its inputs")
    model = fit(record["params"], data.X, data.y, record["seeds"]["model"], record["cv"]["n_estimators"])
    return model, data


def _ml_library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name, dist in _ML_LIBRARIES.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
