"""Prediction stage: every listed symbol of each session scored by the model current then.

The model of session t is the latest version with ``cutoff <= t`` (trained on labels known
before it). Every session of the run is computed before any partition is replaced, so a model
that cannot be loaded or a missing feature column fails the run with every stored prediction
intact. A session with no model trained by then gets an empty partition and is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from alphatwin_pipelines.alpha.catalogue import current_models, features_of, load_model, read_models
from alphatwin_pipelines.alpha.dataset import read_features
from alphatwin_pipelines.alpha.predict import empty_predictions, predict_session
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_PREDICTIONS, FEATURES, require_partitions


@dataclass
class PredictionReport:
    rows: dict[pd.Timestamp, int]
    versions: dict[pd.Timestamp, list[str]]
    without_model: list[pd.Timestamp] = field(default_factory=list)


def predict_sessions(store: TableStore, sessions: pd.DatetimeIndex) -> PredictionReport:
    require_partitions(store, FEATURES, sessions)
    models, loaded = read_models(store), {}
    frames, versions, without = [], {}, []
    for session in sessions:
        current = current_models(models, session)
        versions[session] = list(current["model_version"]) if len(current) else []
        if current.empty:
            without.append(session)
            continue
        names = sorted({n for _, row in current.iterrows() for n in features_of(row)})
        features = read_features(store, session, session, names)
        for _, row in current.iterrows():
            if row["model_version"] not in loaded:
                loaded[row["model_version"]] = load_model(store, row)
            frames.append(predict_session(features, session, int(row["horizon"]), row["model_version"],
                                          loaded[row["model_version"]], features_of(row)))
    frame = pd.concat(frames, ignore_index=True) if frames else empty_predictions()
    frame = frame.sort_values(["date", "horizon", "rank"], kind="stable")
    rows = store.write_sessions(ALPHA_PREDICTIONS, frame, sessions)
    return PredictionReport(rows, versions, without)
