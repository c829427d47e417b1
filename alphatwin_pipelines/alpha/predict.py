"""Batch inference for one session: scores, ranks and the three features behind each score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.alpha.dataset import AlphaInputError
from alphatwin_pipelines.alpha.models import contributions
from alphatwin_pipelines.tables import FEATURES as FEATURE_TABLE

TOP = 3
PREDICTION_COLUMNS = ("date", "symbol", "horizon", "score", "rank", "model_version",
                      *(f"feature_{k}" for k in range(1, TOP + 1)), *(f"value_{k}" for k in range(1, TOP + 1)),
                      *(f"shap_{k}" for k in range(1, TOP + 1)), "explanation")


def predict_session(features: pd.DataFrame, session, horizon: int, version: str, model, names: list[str]) -> pd.DataFrame:
    """One row per symbol of ``features`` (the session's feature partition) with its score
    (higher: better expected forward return), rank (1 = best), and the ``TOP`` features by
    absolute contribution, their values, contributions and a sentence."""
    session = pd.Timestamp(session)
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise AlphaInputError(f"{FEATURE_TABLE} partition {session:%Y-%m-%d} has no column {missing[0]!r} that model "
                              f"version {version} needs ({len(missing)} missing: {missing[:5]}); re-materialise "
                              f"{FEATURE_TABLE} for {session:%Y-%m-%d} or retrain alpha_models")
    frame = features[features["date"] == session].sort_values("symbol", kind="stable").reset_index(drop=True)
    if frame.empty:
        return empty_predictions()
    X = frame[names].to_numpy(dtype=float)
    score = np.asarray(model.predict(X), dtype=float)
    contrib = contributions(model, X)
    top = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :TOP]
    rows = np.arange(len(frame))[:, None]
    out = {"date": frame["date"].to_numpy(dtype="datetime64[ns]"), "symbol": frame["symbol"].astype("string").to_numpy(),
           "horizon": np.full(len(frame), horizon, dtype=np.int64), "score": score,
           "rank": pd.Series(-score).rank(method="first").astype(np.int64).to_numpy(),
           "model_version": np.full(len(frame), version, dtype=object)}
    names_arr = np.asarray(names, dtype=object)
    percentile = frame[names].rank(pct=True).to_numpy()
    for k in range(TOP):
        out[f"feature_{k + 1}"] = names_arr[top[:, k]]
    for k in range(TOP):
        out[f"value_{k + 1}"] = X[rows[:, 0], top[:, k]]
    for k in range(TOP):
        out[f"shap_{k + 1}"] = contrib[rows[:, 0], top[:, k]]
    out["explanation"] = [explain(names_arr[top[i]], percentile[i, top[i]], contrib[i, top[i]]) for i in range(len(frame))]
    result = pd.DataFrame(out)
    for col in ("symbol", "model_version", "explanation", *(f"feature_{k}" for k in range(1, TOP + 1))):
        result[col] = result[col].astype("string")
    return result


def explain(names, percentiles, contribs) -> str:
    """"rsi_14 low (+0.012), ret_20d high (-0.004), …": each feature's level against the
    session's cross-section, and how much it moved the score."""
    parts = []
    for name, pct, c in zip(names, percentiles, contribs):
        level = "missing" if not np.isfinite(pct) else "high" if pct >= 2 / 3 else "low" if pct <= 1 / 3 else "mid"
        parts.append(f"{name} {level} ({c:+.3g})")
    return ", ".join(parts)


def empty_predictions() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in PREDICTION_COLUMNS})
    frame["date"] = pd.Series(dtype="datetime64[ns]")
    frame["horizon"] = pd.Series(dtype="int64")
    frame["rank"] = pd.Series(dtype="int64")
    for c in ("score", *(f"value_{k}" for k in range(1, TOP + 1)), *(f"shap_{k}" for k in range(1, TOP + 1))):
        frame[c] = pd.Series(dtype="float64")
    return frame


def read_score_matrix(store, horizon: int, start=None, end=None) -> pd.DataFrame:
    """``score_matrix`` of the stored ``alpha_predictions`` in [start, end]."""
    from alphatwin_pipelines.tables import ALPHA_PREDICTIONS

    return score_matrix(store.read_partitions(ALPHA_PREDICTIONS, start, end, columns=["date", "symbol", "horizon", "score"]),
                        horizon)


def score_matrix(predictions: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The T x N score matrix (sessions x symbols) of ``horizon`` from ``alpha_predictions``
    rows: what a cross-sectional rank strategy (``ml_rank``) reads. NaN where a symbol has no score."""
    rows = predictions[predictions["horizon"] == horizon]
    return rows.pivot_table(index="date", columns="symbol", values="score", aggfunc="last").sort_index()
