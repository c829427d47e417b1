"""Label stage: the forward returns that become known at each session of the run.

Partition ``s`` holds the labels whose exit open is on ``s`` (``available == s``): decision
session ``s - 1 - h`` for each horizon ``h``. Materialising ``s`` reads the adjusted opens of
the ``1 + max(h)`` sessions before it and of ``s`` itself, nothing after, so a backfill and a
nightly run write the same partitions and a training read up to ``c`` sees only what was
known at ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.alpha.labels import HORIZONS, compute_labels, label_lookback
from alphatwin_pipelines.calendar import lookback_start
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import ALPHA_LABELS, CLEANED, read_adjusted, require_partitions


@dataclass
class LabelReport:
    rows: dict[pd.Timestamp, int]
    horizons: tuple[int, ...]


def label_sessions(store: TableStore, sessions: pd.DatetimeIndex, horizons=HORIZONS) -> LabelReport:
    """Compute and replace the ``alpha_labels`` partitions of ``sessions``."""
    require_partitions(store, CLEANED, sessions)
    bars = read_adjusted(store, start=lookback_start(sessions[0], label_lookback(horizons)), end=sessions[-1],
                         as_of=sessions[-1], columns=["open"])
    labels = compute_labels(bars, sessions, horizons)
    rows = store.write_sessions(ALPHA_LABELS, labels, sessions, key="available")
    return LabelReport(rows, tuple(horizons))
