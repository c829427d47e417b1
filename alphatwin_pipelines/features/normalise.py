"""Normalised copies of scale-free features.

Cross-sectional (per session, across the symbols present that session; NaN inputs are
ignored and stay NaN):

* ``cs_z``: ``(x - mean) / std`` with the population std (ddof=0), so each session's
  z-scores have mean 0 and std 1 exactly;
* ``cs_minmax``: ``(x - min) / (max - min)``, in [0, 1];
* ``cs_robust``: ``(x - median) / IQR`` (quartiles by linear interpolation, as ``np.quantile``);
* ``cs_rank``: percentile rank ``rank / n`` in (0, 1], ties get their average rank (as
  ``pandas.Series.rank(pct=True)``).

A degenerate session (fewer than two values, or no spread) gives NaN rather than a made-up
number. These only use values from the same session, so they are as point-in-time as their
inputs.

Time series (per symbol): ``ts_z`` is ``(x_t - mean) / std`` over the symbol's last ``window``
values ``x_{t-window+1} .. x_t`` (ddof=0): past and present only, NaN until a full window.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import talib


class Sessions(NamedTuple):
    """Rows grouped by session: ``order`` lists row indices session by session."""

    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    group: np.ndarray  # session number of each entry of ``order``


def sessions_of(session_codes: np.ndarray) -> Sessions:
    order = np.argsort(session_codes, kind="stable")
    codes = session_codes[order]
    new = np.r_[True, codes[1:] != codes[:-1]] if codes.size else np.empty(0, dtype=bool)
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, codes.size])
    return Sessions(order, starts, sizes, np.cumsum(new) - 1)


def _scatter(s: Sessions, by_session_order: np.ndarray) -> np.ndarray:
    out = np.empty_like(by_session_order)
    out[s.order] = by_session_order
    return out


def _per_row(s: Sessions, per_session: np.ndarray) -> np.ndarray:
    return np.repeat(per_session, s.sizes)


def _zscore(xs: np.ndarray, s: Sessions) -> np.ndarray:
    fin = np.isfinite(xs)
    count = np.add.reduceat(fin.astype(np.float64), s.starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.add.reduceat(np.where(fin, xs, 0.0), s.starts) / count
        dev = xs - _per_row(s, mean)
        std = np.sqrt(np.add.reduceat(np.where(fin, dev * dev, 0.0), s.starts) / count)  # two-pass
        return dev / _per_row(s, np.where((count >= 2) & (std > 0), std, np.nan))


def _minmax(xs: np.ndarray, s: Sessions) -> np.ndarray:
    lo = np.fmin.reduceat(xs, s.starts)
    rng = np.fmax.reduceat(xs, s.starts) - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xs - _per_row(s, lo)) / _per_row(s, np.where(rng > 0, rng, np.nan))


def _within_session_sort(xs: np.ndarray, s: Sessions) -> np.ndarray:
    """Positions into ``xs`` sorted by (session, value); NaNs last within each session.

    One small sort per session: much faster than one global sort of the whole panel.
    """
    idx = np.empty(xs.size, dtype=np.int64)
    for a, n in zip(s.starts.tolist(), s.sizes.tolist()):
        idx[a : a + n] = a + np.argsort(xs[a : a + n])
    return idx


def _quantile(v: np.ndarray, s: Sessions, n_finite: np.ndarray, q: float) -> np.ndarray:
    pos = s.starts + q * np.maximum(n_finite - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    out = v[lo] + (v[hi] - v[lo]) * (pos - lo)
    return np.where(n_finite > 0, out, np.nan)


def _robust(xs: np.ndarray, s: Sessions, idx: np.ndarray) -> np.ndarray:
    n_finite = np.add.reduceat(np.isfinite(xs).astype(np.int64), s.starts)
    v = xs[idx]
    median = _quantile(v, s, n_finite, 0.5)
    iqr = _quantile(v, s, n_finite, 0.75) - _quantile(v, s, n_finite, 0.25)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xs - _per_row(s, median)) / _per_row(s, np.where((n_finite >= 2) & (iqr > 0), iqr, np.nan))


def _rank(xs: np.ndarray, s: Sessions, idx: np.ndarray) -> np.ndarray:
    v = xs[idx]
    n_finite = np.add.reduceat(np.isfinite(v).astype(np.float64), s.starts)
    new_run = np.empty(v.size, dtype=bool)
    new_run[0] = True
    np.not_equal(v[1:], v[:-1], out=new_run[1:])
    new_run[s.starts] = True
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, v.size])
    avg_pos = np.repeat(run_start + (run_len - 1) / 2.0, run_len)  # ties share their mean position
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = (avg_pos - _per_row(s, s.starts) + 1.0) / _per_row(s, n_finite)
    pct[~np.isfinite(v)] = np.nan
    out = np.empty_like(pct)
    out[idx] = pct
    return out


def cs_zscore(values: np.ndarray, s: Sessions) -> np.ndarray:
    return cross_sectional(values, s, [cs_zscore])[0]


def cs_minmax(values: np.ndarray, s: Sessions) -> np.ndarray:
    return cross_sectional(values, s, [cs_minmax])[0]


def cs_robust(values: np.ndarray, s: Sessions) -> np.ndarray:
    return cross_sectional(values, s, [cs_robust])[0]


def cs_rank(values: np.ndarray, s: Sessions) -> np.ndarray:
    return cross_sectional(values, s, [cs_rank])[0]


def cross_sectional(values: np.ndarray, s: Sessions, functions) -> list[np.ndarray]:
    """Several cross-sectional scalings of one feature: one gather, one sort per session."""
    if values.size == 0:
        return [values.copy() for _ in functions]
    xs = values[s.order]
    idx = _within_session_sort(xs, s) if any(f in (cs_robust, cs_rank) for f in functions) else None
    kernels = {cs_zscore: lambda: _zscore(xs, s), cs_minmax: lambda: _minmax(xs, s),
               cs_robust: lambda: _robust(xs, s, idx), cs_rank: lambda: _rank(xs, s, idx)}
    return [_scatter(s, kernels[f]()) for f in functions]


def ts_zscore(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    """Per-symbol rolling z-score; ``starts``/``ends`` delimit each symbol's contiguous rows."""
    mean = np.full_like(values, np.nan)
    var = np.full_like(values, np.nan)
    if values.size:
        finite = np.isfinite(values)
        pos = np.arange(values.size)
        first = np.minimum.reduceat(np.where(finite, pos, values.size), starts)
        n_finite = np.add.reduceat(finite.astype(np.int64), starts)
        only_leading = n_finite == ends - np.minimum(first, ends)  # no NaN after the first value
        for a, b, simple in zip(starts.tolist(), ends.tolist(), only_leading.tolist()):
            if b - a < window:
                continue
            x = values[a:b]
            if simple:  # TA-Lib skips leading NaNs; its running sums are accurate for ratios
                mean[a:b] = talib.SMA(x, timeperiod=window)
                var[a:b] = talib.VAR(x, timeperiod=window, nbdev=1.0)
            else:  # an interior NaN would poison TA-Lib's running sums
                roll = pd.Series(x).rolling(window, min_periods=window)
                mean[a:b] = roll.mean().to_numpy()
                var[a:b] = roll.var(ddof=0).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, (values - mean) / np.sqrt(var), np.nan)
