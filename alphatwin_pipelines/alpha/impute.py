"""A median imputer for the linear model (imports scikit-learn: load it only where models are built).

scikit-learn's ``SimpleImputer(strategy="median")`` sorts a masked array column by column, a third
of a whole model search on a 60,000-row window; ``np.nanmedian`` gives the same medians.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class NanMedianImputer(TransformerMixin, BaseEstimator):
    """Replace NaN by the column's median over the fit rows (0 for a column that is all NaN)."""

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
        self.statistics_ = np.where(np.isfinite(medians), medians, 0.0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.array(X, dtype=float, copy=True)
        holes = np.isnan(X)
        X[holes] = np.broadcast_to(self.statistics_, X.shape)[holes]
        return X
