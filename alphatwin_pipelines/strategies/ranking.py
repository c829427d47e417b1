"""Cross-sectional rank engine: any score matrix to rebalance-day target weights.

``score`` is a (T, N) float matrix decided at each session's close (higher = more wanted long);
NaN marks a symbol that cannot be ranked that day (no bar, too short a history, no model score).
Anything can drive it: momentum and reversal returns here, model scores elsewhere.

On every rebalance row (``first_row``, ``first_row + rebalance``, ...), with n rankable symbols:

* ``long_only``:  the top ``k = min(top_k, n)`` symbols by score, ``1 / k`` of equity each;
* ``long_short``: the top ``k = min(top_k, n // 2)`` long at ``+0.5 / k`` each and the bottom k
  short at ``-0.5 / k`` each: dollar-neutral, gross exposure 1;

every other symbol's target is 0. Ties are broken by column order (stable), so the same scores
always give the same book. Rows between rebalances carry no decision (NaN): the book holds its
shares. A target at row t depends on ``score[t]`` only, so it is as causal as the score.
"""

from __future__ import annotations

import numpy as np

MODES = ("long_only", "long_short")


def rebalance_rows(T: int, rebalance: int, first_row: int = 0) -> np.ndarray:
    """(T,) bool: True on ``first_row`` and every ``rebalance`` sessions after it."""
    if int(rebalance) < 1:
        raise ValueError(f"rebalance must be at least 1 session, got {rebalance}")
    rows = np.zeros(T, dtype=bool)
    rows[int(first_row)::int(rebalance)] = True
    return rows


def rank_targets(score: np.ndarray, top_k: int, mode: str = "long_short", rebalance: int = 21,
                 first_row: int = 0) -> np.ndarray:
    """(T, N) target weights on rebalance rows, NaN elsewhere (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2:
        raise ValueError(f"score must be a (sessions x symbols) matrix, got {score.ndim}-D")
    T, N = score.shape
    out = np.full((T, N), np.nan)
    for t in np.flatnonzero(rebalance_rows(T, rebalance, first_row)):
        row = score[t]
        ok = np.flatnonzero(np.isfinite(row))
        target = np.zeros(N)
        # descending by score, ties by column: sort (-score, column) lexicographically
        ranked = ok[np.lexsort((ok, -row[ok]))]
        if mode == "long_only":
            k = min(int(top_k), ranked.size)
            if k:
                target[ranked[:k]] = 1.0 / k
        else:
            k = min(int(top_k), ranked.size // 2)
            if k:
                target[ranked[:k]] = 0.5 / k
                target[ranked[-k:]] = -0.5 / k
        out[t] = target
    return out
