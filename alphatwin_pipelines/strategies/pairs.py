"""Pairs trading: a rolling hedge ratio, the spread's z-score and the raw entry/exit state.

For a pair (a, b), on the sessions where both have a bar (the pair's own rows), with
``x = log close_b`` and ``y = log close_a`` over the last ``z_window`` of those rows up to t:

* hedge ratio ``beta_t = cov(x, y) / var(x)`` (OLS of y on x, the window's own rows);
* spread ``s = y - beta_t * x`` over the same window; ``z_t = (s_t - mean(s)) / std(s)``
  (population std), NaN while the window is short, flat or ``beta_t <= 0``.

Raw state (decided at the close of t, filled at the next open by the book engine):
``z > entry_z`` -> short the spread (-1: short a, long b), ``z < -entry_z`` -> long the
spread (+1), ``|z| < exit_z`` -> flat; otherwise the state carries on. The legs of a unit of
spread are ``a: s / (1 + beta)`` and ``b: -s * beta / (1 + beta)`` (gross 1, beta frozen at the
entry by the book overlay). Time stop (``hold_limit``) and loss stop (``pair_stop``, on the
position's return since the fill) are the overlay's, so they share its re-entry rule.
Everything at t uses rows <= t only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pair_zscore(close_a: np.ndarray, close_b: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(beta, z), each (T,), on the rows where both closes are finite and positive (else NaN)."""
    T = close_a.size
    beta_out, z_out = np.full(T, np.nan), np.full(T, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.flatnonzero(np.isfinite(close_a) & np.isfinite(close_b) & (close_a > 0) & (close_b > 0))
        if rows.size < window or window < 2:
            return beta_out, z_out
        y, x = np.log(close_a[rows]), np.log(close_b[rows])
        wy, wx = sliding_window_view(y, window), sliding_window_view(x, window)
        mx, my = wx.mean(axis=1), wy.mean(axis=1)
        dx, dy = wx - mx[:, None], wy - my[:, None]
        var = (dx * dx).sum(axis=1)
        beta = np.where(var > 0, (dx * dy).sum(axis=1) / var, np.nan)
        spread = dy - beta[:, None] * dx  # the window's spread, demeaned (its mean is 0 by construction)
        std = np.sqrt((spread * spread).mean(axis=1))
        z = np.where((std > 1e-12) & (beta > 0), spread[:, -1] / std, np.nan)
    at = rows[window - 1:]
    beta_out[at], z_out[at] = np.where(beta > 0, beta, np.nan), z
    return beta_out, z_out


def pair_state(z: np.ndarray, entry_z: float, exit_z: float) -> np.ndarray:
    """(T,) raw spread state in {-1, 0, +1} from the z-score (module docstring)."""
    with np.errstate(invalid="ignore"):
        decided = np.where(z > entry_z, -1.0, np.where(z < -entry_z, 1.0, np.where(np.abs(z) < exit_z, 0.0, np.nan)))
    # carry the last decision on (NaN z: no new decision); before the first one, flat
    idx = np.where(np.isfinite(decided), np.arange(z.size), -1)
    last = np.maximum.accumulate(idx)
    return np.where(last >= 0, decided[np.maximum(last, 0)], 0.0)


def pair_units(close: np.ndarray, legs: np.ndarray, window: int, entry_z: float, exit_z: float):
    """Raw unit states (T, M) and leg ratios (T, M, 2) of the pairs ``legs`` ((M, 2) column indices)."""
    T, M = close.shape[0], legs.shape[0]
    state, ratio = np.zeros((T, M)), np.zeros((T, M, 2))
    for m, (a, b) in enumerate(legs):
        beta, z = pair_zscore(close[:, a], close[:, b], window)
        state[:, m] = pair_state(z, entry_z, exit_z)
        ok = np.isfinite(beta)
        ratio[:, m, 0] = np.where(ok, 1.0 / (1.0 + np.where(ok, beta, 0.0)), np.nan)
        ratio[:, m, 1] = np.where(ok, -np.where(ok, beta, 0.0) / (1.0 + np.where(ok, beta, 0.0)), np.nan)
    return state, ratio
