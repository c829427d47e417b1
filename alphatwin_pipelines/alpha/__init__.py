"""Alpha models: forward-return labels, purged cross-validation, LightGBM and linear models,
point-in-time datasets, explanations and the MLflow registry. No Dagster imports; lightgbm,
scikit-learn, shap and mlflow are imported inside the functions that use them.

Point in time, in one place:

* a label of decision session ``t`` and horizon ``h`` enters at the open of ``t+1`` and exits
  at the open of ``t+1+h`` (as the backtests fill); it becomes known at session
  ``available = t+1+h`` and is stored in that session's ``alpha_labels`` partition;
* a model with ``cutoff`` c was trained on labels with ``available < c`` only (so on features
  dated before c too) and serves predictions at sessions ``t >= c``;
* the model current at session t is the latest version with ``cutoff <= t``.
"""

from alphatwin_pipelines.alpha.labels import HORIZONS, compute_labels

__all__ = ["HORIZONS", "compute_labels"]
