"""Model stage: one model version per horizon, trained on what was known before the cutoff.

Search (purged K-fold CV + a seeded Optuna study), fit, write the artifact, log and register it
in MLflow, and only then add its row to ``alpha_models``: a registry that cannot be reached
fails the run with the table unchanged. Re-running on unchanged inputs gives the same version
(the content hash), the same artifact bytes and the same row; the study runs no new trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.alpha.catalogue import model_row, upsert_models, write_artifact
from alphatwin_pipelines.alpha.dataset import AlphaInputError, model_features, read_training_inputs
from alphatwin_pipelines.alpha.registry import MODEL_NAME, check_reachable, register
from alphatwin_pipelines.alpha.training import AlphaTrainingConfig, train_version
from alphatwin_pipelines.reproducibility import input_hashes
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, FEATURES


@dataclass
class ModelsReport:
    cutoff: pd.Timestamp
    rows: pd.DataFrame  # the rows of this run's versions
    table: pd.DataFrame  # the whole alpha_models table after the run
    trials_run: int


def train_models(store: TableStore, settings: AlphaTrainingConfig, optuna_url: str, mlflow_uri: str,
                 artifact_root=None, names: list[str] | None = None, logger=None) -> ModelsReport:
    check_reachable(mlflow_uri)
    cutoff = pd.Timestamp(settings.as_of) if settings.as_of else _latest(store)
    names = names or model_features()
    features, labels = read_training_inputs(store, cutoff, settings.train_sessions, settings.horizons, names)
    inputs = {**input_hashes(store, ALPHA_LABELS, pd.DatetimeIndex(labels["available"].unique())),
              **input_hashes(store, FEATURES, pd.DatetimeIndex(features["date"].unique()))}
    rows, ran = [], 0
    for horizon in settings.horizons:
        version = train_version(features, labels, horizon, cutoff, names, settings, optuna_url, inputs=inputs)
        ran += version.found.trials_run
        artifact = write_artifact(store, version.version, version.artifact_bytes())
        run_id, registered = register(mlflow_uri, artifact_root or store.data_dir / "mlruns", version, artifact)
        rows.append(model_row(store, version, artifact, run_id, registered, MODEL_NAME.format(horizon=horizon)))
        if logger is not None:
            logger.info(f"horizon {horizon}: version {version.version} ({version.found.params['kind']}), CV rank IC "
                        f"{version.found.score.rank_ic:.4f} vs linear baseline {version.found.baseline.rank_ic:.4f}")
    table = upsert_models(store, rows)
    return ModelsReport(cutoff, pd.DataFrame(rows), table, ran)


def _latest(store: TableStore) -> pd.Timestamp:
    stored = store.stored_sessions(FEATURES)
    if len(stored) == 0:
        raise AlphaInputError(f"{FEATURES} has no partition under {store.data_dir}: materialise it first")
    return stored[-1]
