"""Purged K-fold cross-validation with an embargo (López de Prado, AFML ch. 7), over sessions.

Samples are (decision session, symbol) rows whose label spans [date, available]. The sessions
are cut into ``folds`` contiguous blocks; for each test block the training set is every row
whose label interval does not overlap the test block's span [first test date, last test
``available``] (the purge: at least the horizon on the left) and whose date is not within
``embargo`` sessions after the block (the embargo: serial correlation leaking backwards).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def purged_kfold(dates: np.ndarray, available: np.ndarray, folds: int, embargo: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train row indices, test row indices) per fold.

    ``dates`` and ``available`` are session *ordinals* (integers on the trading calendar), so the
    embargo counts sessions, not calendar days.
    """
    dates, available = np.asarray(dates, dtype=np.int64), np.asarray(available, dtype=np.int64)
    unique = np.unique(dates)
    if folds < 2 or len(unique) < folds:
        raise ValueError(f"purged K-fold needs at least 2 folds and one session per fold: {folds} folds, "
                         f"{len(unique)} decision session(s); widen the training window or lower folds")
    for block in np.array_split(unique, folds):
        lo, hi = block[0], block[-1]
        test = np.flatnonzero((dates >= lo) & (dates <= hi))
        span_end = available[test].max()
        overlaps = (dates <= span_end) & (available >= lo)
        embargoed = (dates > hi) & (dates <= span_end + embargo)
        train = np.flatnonzero(~overlaps & ~embargoed)
        yield train, test
