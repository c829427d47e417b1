"""The two model kinds: LightGBM and a linear baseline (median-imputed, standardised ridge).

Both learn the per-session percentile rank of the forward return (centred on 0): the ranking
is what a long/short or top-k book trades, and ranks are robust to the fat-tailed returns.
Both are seeded and single-threaded per fit, so a model is a function of its data and
parameters only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("linear", "lightgbm")
#: The linear baseline's default ridge penalty (also the baseline reported beside every search).
BASELINE_PARAMS = {"kind": "linear", "alpha": 10.0}


def rank_target(dates: np.ndarray, fwd_return: np.ndarray) -> np.ndarray:
    """Per-session percentile rank of the forward return, centred on 0 (ties averaged)."""
    frame = pd.DataFrame({"d": dates, "r": fwd_return})
    return (frame.groupby("d")["r"].rank(pct=True) - 0.5).to_numpy()


def make_model(params: dict, seed: int, n_estimators: int):
    """An unfitted estimator for ``params`` (``kind`` plus that kind's hyperparameters)."""
    kind = params["kind"]
    if kind == "linear":
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from alphatwin_pipelines.alpha.impute import NanMedianImputer

        return make_pipeline(NanMedianImputer(), StandardScaler(), Ridge(alpha=float(params["alpha"])))
    if kind == "lightgbm":
        from lightgbm import LGBMRegressor

        # 63 bins: daily features are noisy enough that finer splits buy nothing, and binning is faster.
        return LGBMRegressor(
            n_estimators=int(params.get("n_estimators", n_estimators)), num_leaves=int(params["num_leaves"]),
            learning_rate=float(params["learning_rate"]), min_child_samples=int(params["min_child_samples"]),
            colsample_bytree=float(params["colsample_bytree"]), subsample=0.8, subsample_freq=1,
            max_bin=63, random_state=seed, n_jobs=1, deterministic=True, force_col_wise=True, verbose=-1)
    raise ValueError(f"unknown model kind {kind!r}: use one of {KINDS}")


def fit(params: dict, X: np.ndarray, y: np.ndarray, seed: int, n_estimators: int):
    model = make_model(params, seed, n_estimators)
    model.fit(X, y)
    return model


def contributions(model, X: np.ndarray) -> np.ndarray:
    """Per-row, per-feature contributions to the score: SHAP values (tree explainer) for
    LightGBM, coefficient x standardised value for the linear model."""
    if hasattr(model, "booster_"):
        import shap

        return np.asarray(shap.TreeExplainer(model).shap_values(X))
    imputer, scaler, ridge = (step for _, step in model.steps)
    return scaler.transform(imputer.transform(X)) * ridge.coef_


def importance(model, names) -> dict[str, float]:
    """Gain importance (LightGBM) or |coefficient| on standardised features (linear), summing to 1."""
    if hasattr(model, "booster_"):
        raw = model.booster_.feature_importance(importance_type="gain").astype(float)
    else:
        raw = np.abs(model.steps[-1][1].coef_)
    total = raw.sum() or 1.0
    return {str(n): float(v / total) for n, v in zip(names, raw)}


def daily_ic(dates: np.ndarray, score: np.ndarray, fwd_return: np.ndarray) -> pd.DataFrame:
    """Per-session Pearson IC and Spearman rank IC of ``score`` against the forward return."""
    frame = pd.DataFrame({"date": dates, "s": score, "r": fwd_return}).dropna()
    frame["sr"] = frame.groupby("date")["s"].rank()
    frame["rr"] = frame.groupby("date")["r"].rank()
    rows = []
    for date, g in frame.groupby("date", sort=True):
        if len(g) < 3:
            continue
        rows.append((date, _corr(g["s"].to_numpy(), g["r"].to_numpy()), _corr(g["sr"].to_numpy(), g["rr"].to_numpy())))
    return pd.DataFrame(rows, columns=["date", "ic", "rank_ic"])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else np.nan
