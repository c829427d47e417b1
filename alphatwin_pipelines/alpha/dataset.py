"""Point-in-time training sets: features joined to the labels known before a cutoff.

Every read and every filter that decides what a model may see lives here, so the no-leakage
tests exercise exactly the code the stages run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions, previous_sessions
from alphatwin_pipelines.features import FEATURES
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, FEATURES as FEATURE_TABLE


class AlphaInputError(ValueError):
    """Inputs a model cannot be trained or run on (missing column, no labels, unknown version)."""


def model_features() -> list[str]:
    """The scale-free features (unit ``ratio``): comparable across symbols, unlike dollar levels."""
    return [spec.name for spec in FEATURES if spec.unit == "ratio"]


def session_ordinals(dates) -> np.ndarray:
    """Positions of ``dates`` on the trading calendar (so gaps count sessions, not days)."""
    out = all_sessions().get_indexer(pd.DatetimeIndex(dates))
    if (out < 0).any():
        bad = pd.DatetimeIndex(dates)[out < 0][0]
        raise AlphaInputError(f"{bad:%Y-%m-%d} is not an NYSE session")
    return out


@dataclass
class TrainingSet:
    X: np.ndarray
    y: np.ndarray  # per-session centred rank of fwd_return
    fwd_return: np.ndarray
    dates: np.ndarray  # datetime64 decision sessions
    date_ord: np.ndarray
    available_ord: np.ndarray
    names: list[str]
    first_date: pd.Timestamp
    last_date: pd.Timestamp
    labels_known_through: pd.Timestamp  # the latest ``available`` used: always before the cutoff

    @property
    def rows(self) -> int:
        return len(self.y)


def require_columns(features: pd.DataFrame, names, what: str) -> None:
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise AlphaInputError(f"{FEATURE_TABLE} has no column {missing[0]!r} ({what}; {len(missing)} missing in all: "
                              f"{missing[:5]}); re-materialise {FEATURE_TABLE} for those sessions with the current "
                              "feature catalogue, or retrain the model on the features that exist")


def training_set(features: pd.DataFrame, labels: pd.DataFrame, horizon: int, cutoff, train_sessions: int,
                 names: list[str]) -> TrainingSet:
    """The rows a model with ``cutoff`` may learn from: labels of ``horizon`` with ``available <
    cutoff``, on the last ``train_sessions`` decision sessions that have any, joined to the
    features of their decision session. Whatever else ``features`` and ``labels`` hold is ignored."""
    cutoff = pd.Timestamp(cutoff)
    known = labels[(labels["horizon"] == horizon) & (labels["available"] < cutoff)]
    known = known[np.isfinite(known["fwd_return"].to_numpy(dtype=float))]
    days = np.sort(known["date"].unique())[-train_sessions:]
    if len(days) == 0:
        raise AlphaInputError(f"no {ALPHA_LABELS} of horizon {horizon} known before {cutoff:%Y-%m-%d}: materialise "
                              f"{ALPHA_LABELS} (and {FEATURE_TABLE}) for the sessions before it")
    known = known[known["date"] >= days[0]]
    require_columns(features, names, f"needed for training before {cutoff:%Y-%m-%d}")
    feats = features[(features["date"] >= days[0]) & (features["date"] < cutoff)]
    rows = known.merge(feats[["date", "symbol", *names]].astype({"symbol": "string"}), on=["date", "symbol"], how="inner")
    rows = rows.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
    if rows.empty:
        raise AlphaInputError(f"no {FEATURE_TABLE} rows match the {ALPHA_LABELS} of horizon {horizon} before "
                              f"{cutoff:%Y-%m-%d}: materialise {FEATURE_TABLE} for {pd.Timestamp(days[0]):%Y-%m-%d}.."
                              f"{pd.Timestamp(days[-1]):%Y-%m-%d}")
    from alphatwin_pipelines.alpha.models import rank_target

    dates = rows["date"].to_numpy(dtype="datetime64[ns]")
    fwd = rows["fwd_return"].to_numpy(dtype=float)
    return TrainingSet(
        X=rows[names].to_numpy(dtype=float), y=rank_target(dates, fwd), fwd_return=fwd, dates=dates,
        date_ord=session_ordinals(rows["date"]), available_ord=session_ordinals(rows["available"]), names=list(names),
        first_date=pd.Timestamp(dates[0]), last_date=pd.Timestamp(dates[-1]),
        labels_known_through=pd.Timestamp(rows["available"].max()))


def read_training_inputs(store: TableStore, cutoff, train_sessions: int, horizons, names) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored labels and features a model with ``cutoff`` needs: label partitions strictly
    before ``cutoff`` (labels are partitioned by the session they become known), and the
    features of their decision sessions. Nothing dated at or after ``cutoff`` is read."""
    before = previous_sessions(cutoff, train_sessions + 1 + max(horizons))
    if len(before) == 0:
        raise AlphaInputError(f"no session before the cutoff {pd.Timestamp(cutoff):%Y-%m-%d}")
    labels = store.read_partitions(ALPHA_LABELS, start=before[0], end=before[-1])
    if labels.empty:
        raise AlphaInputError(f"{ALPHA_LABELS} has no partition in {before[0]:%Y-%m-%d}..{before[-1]:%Y-%m-%d} under "
                              f"{store.data_dir}: materialise {ALPHA_LABELS} for the sessions before the cutoff")
    labels = labels[labels["horizon"].isin(list(horizons))]
    features = read_features(store, labels["date"].min(), before[-1], names)
    return features, labels


def read_features(store: TableStore, start, end, names) -> pd.DataFrame:
    """``date``, ``symbol`` and ``names`` of the feature partitions in [start, end]; a partition
    without one of ``names`` is an ``AlphaInputError`` naming the column and the session."""
    sessions = store.stored_sessions(FEATURE_TABLE)
    sessions = sessions[(sessions >= pd.Timestamp(start)) & (sessions <= pd.Timestamp(end))]
    for session in sessions:
        present = set(store.read_schema(FEATURE_TABLE, session).names)
        missing = [n for n in names if n not in present]
        if missing:
            raise AlphaInputError(
                f"{FEATURE_TABLE} partition {session:%Y-%m-%d} has no column {missing[0]!r} ({len(missing)} missing: "
                f"{missing[:5]}); re-materialise {FEATURE_TABLE} for {session:%Y-%m-%d} with the current feature "
                "catalogue, or retrain the model on the features that exist")
    return store.read_partitions(FEATURE_TABLE, start=start, end=end, columns=["date", "symbol", *names])
