"""The ``alpha_models`` table (one row per model version) and its artifacts on disk.

Artifacts are pickles at ``<data_dir>/alpha_models/<version>.pkl``, written atomically, named
by the version's content hash and checked against their sha256 on load.
"""

from __future__ import annotations

import hashlib
import json
import pickle

import pandas as pd

from alphatwin_pipelines.alpha.dataset import AlphaInputError
from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_MODELS, resolve_stored_path, stored_path


class AlphaModelError(RuntimeError):
    """A model version that cannot be found or loaded."""


def artifact_path(store: TableStore, version: str):
    return store.table_dir(ALPHA_MODELS) / f"{version}.pkl"


def write_artifact(store: TableStore, version: str, payload: bytes):
    path = artifact_path(store, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != hashlib.sha256(payload).hexdigest():
        atomic_write_bytes(path, lambda tmp: open(tmp, "wb").write(payload))
    return path


def model_row(store: TableStore, version, artifact, run_id: str, registry_version: str, registry_name: str) -> dict:
    score, base = version.found.score, version.found.baseline
    data = version.data
    return {
        "model_version": version.version, "content_hash": version.content_hash, "horizon": int(version.horizon),
        "kind": version.found.params["kind"], "params_json": json.dumps(version.found.params, sort_keys=True),
        "features_json": json.dumps(data.names), "cutoff": version.cutoff, "train_start": data.first_date,
        "train_end": data.last_date, "labels_known_through": data.labels_known_through, "train_rows": data.rows,
        "cv_rank_ic": score.rank_ic, "cv_ic": score.ic, "cv_rank_icir": score.rank_icir,
        "baseline_cv_rank_ic": base.rank_ic, "study_name": version.found.study_name,
        "n_trials": int(version.found.n_trials), "artifact": stored_path(store, artifact),
        "artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(), "mlflow_run_id": run_id,
        "registry_name": registry_name, "registry_version": registry_version,
        "importance_json": json.dumps(version.importance, sort_keys=True),
        "record_json": json.dumps(version.record, sort_keys=True),
    }


def read_models(store: TableStore) -> pd.DataFrame:
    if not store.whole_path(ALPHA_MODELS).exists():
        return pd.DataFrame(columns=["model_version", "horizon", "cutoff", "labels_known_through"])
    return store.read_table(ALPHA_MODELS)


def upsert_models(store: TableStore, rows: list[dict]) -> pd.DataFrame:
    """The table with ``rows`` replacing any row of the same version, in (horizon, cutoff, version) order."""
    old = read_models(store)
    new = pd.DataFrame(rows)
    table = pd.concat([old[~old["model_version"].isin(new["model_version"])] if len(old) else None, new],
                      ignore_index=True)
    table = table.sort_values(["horizon", "cutoff", "model_version"], kind="stable").reset_index(drop=True)
    store.write_table(ALPHA_MODELS, frame_to_arrow(table))
    return table


def current_models(models: pd.DataFrame, session) -> pd.DataFrame:
    """Per horizon, the version current at ``session``: the latest cutoff at or before it
    (ties: the last version in table order). Empty when none was trained by then."""
    if models.empty:
        return models
    ok = models[pd.to_datetime(models["cutoff"]) <= pd.Timestamp(session)]
    return ok.sort_values(["horizon", "cutoff"], kind="stable").groupby("horizon", as_index=False).tail(1) \
        .reset_index(drop=True)


def load_model(store: TableStore, row) -> object:
    """The fitted model of ``row`` (an ``alpha_models`` row), checked against its sha256."""
    path = resolve_stored_path(store, row["artifact"])
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise AlphaModelError(f"model version {row['model_version']} (horizon {row['horizon']}) cannot be read from "
                              f"{path}: {exc}; re-materialise {ALPHA_MODELS} to rebuild it") from exc
    if hashlib.sha256(payload).hexdigest() != row["artifact_sha256"]:
        raise AlphaModelError(f"model version {row['model_version']}: {path} does not match its recorded sha256 "
                              f"(changed or truncated); re-materialise {ALPHA_MODELS} to rebuild it")
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise AlphaModelError(f"model version {row['model_version']} at {path} cannot be loaded ({type(exc).__name__}: "
                              f"{exc}); the library versions may differ from its record, see record_json") from exc


def features_of(row) -> list[str]:
    names = json.loads(row["features_json"])
    if not names:
        raise AlphaInputError(f"model version {row['model_version']} lists no features")
    return names




def leakage_violations(predictions: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Prediction rows whose model is unknown, or was trained on a label known at or after the
    prediction's session (``labels_known_through >= date``) or serves before its cutoff."""
    if predictions.empty:
        return predictions.iloc[:0]
    known = models[["model_version", "labels_known_through", "cutoff"]] if len(models) else \
        pd.DataFrame(columns=["model_version", "labels_known_through", "cutoff"])
    used = predictions[["date", "symbol", "horizon", "model_version"]].astype({"model_version": "string"}).merge(
        known.astype({"model_version": "string"}), on="model_version", how="left")
    through, cutoff = pd.to_datetime(used["labels_known_through"]), pd.to_datetime(used["cutoff"])
    bad = through.isna() | (through >= used["date"]) | (cutoff > used["date"])
    return used[bad.to_numpy()].reset_index(drop=True)
