"""Feature stage: cleaned (adjusted-on-read) bars in, one feature partition per session out.

Sessions are processed in blocks so memory stays bounded on long backfills: each block reads
only its own sessions plus the longest feature lookback before them. A block's bars are
adjusted as of its last session, and ``compute_features`` rescales price and volume features
to each row's own date, so every value at ``t`` is what a trader could compute at ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.calendar import previous_sessions
from alphatwin_pipelines.features import compute_features, max_lookback
from alphatwin_pipelines.stages.cleaning import read_adjusted
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, FEATURES, require_partitions

BLOCK_SESSIONS = 252


@dataclass
class FeatureReport:
    rows: dict[pd.Timestamp, int]
    symbols_with_history: dict[pd.Timestamp, int]  # symbols whose slowest feature is defined
    lookback_sessions: int


def feature_sessions(store: TableStore, sessions: pd.DatetimeIndex, block: int = BLOCK_SESSIONS) -> FeatureReport:
    """Compute and replace the feature partitions of ``sessions``."""
    require_partitions(store, CLEANED, sessions)
    lookback = max_lookback()
    rows, ready = {}, {}
    for first in range(0, len(sessions), block):
        chunk = sessions[first : first + block]
        before = previous_sessions(chunk[0], lookback)
        bars = read_adjusted(store, start=before[0] if len(before) else chunk[0], end=chunk[-1], as_of=chunk[-1])
        features = compute_features(bars, sessions=chunk)
        rows.update(store.write_sessions(FEATURES, features, chunk))
        with_history = features[features["sma_200"].notna()].groupby("date").size()
        ready.update({s: int(with_history.get(s, 0)) for s in chunk})
    return FeatureReport(rows, ready, lookback)
