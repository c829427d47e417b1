"""Feature engine: declared features (``spec``), TA-Lib kernels (``indicators``), scaling
(``normalise``), the point-in-time panel computation (``compute``) and Qlib's 14-feature peer
benchmark (``qlib14``). No Dagster imports here.
"""

from alphatwin_pipelines.features.compute import REQUIRED_COLUMNS, compute_features
from alphatwin_pipelines.features.spec import (
    FEATURES,
    NORMALISATIONS,
    NORMALISED,
    FeatureSpec,
    feature_names,
    feature_table_markdown,
    get_spec,
    max_lookback,
)

__all__ = [
    "FEATURES",
    "NORMALISATIONS",
    "NORMALISED",
    "REQUIRED_COLUMNS",
    "FeatureSpec",
    "compute_features",
    "feature_names",
    "feature_table_markdown",
    "get_spec",
    "max_lookback",
]
