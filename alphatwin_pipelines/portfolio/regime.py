"""Correlation regime: has the co-movement of the strategies changed since the last window?

Weights built on one correlation structure are wrong under another, so the recent window's
correlation matrix is compared with the window before it. The headline figure is the mean
absolute change of the off-diagonal correlations; under a stationary structure it is sampling
noise, about ``0.8·√2·(1-ρ²)/√window`` (≈0.13 for 63 sessions at ρ=0), so the default
threshold of 0.25 sits well above noise and well below a real break.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RegimeCheck:
    window: int
    threshold: float
    recent_start: pd.Timestamp | None
    recent_end: pd.Timestamp | None
    previous_start: pd.Timestamp | None
    previous_end: pd.Timestamp | None
    mean_abs_change: float
    max_abs_change: float
    frobenius_distance: float
    rebalance_suggested: bool
    reason: str

    def as_record(self) -> dict:
        return asdict(self)


def correlation_regime(matrix: pd.DataFrame, window: int = 63, threshold: float = 0.25) -> RegimeCheck:
    """Compare the last ``window`` sessions of ``matrix`` (sessions × strategies) with the ``window`` before.

    Only rows up to the matrix's last session are used, so the check never looks ahead.
    """
    if window < 3:
        raise ValueError(f"regime window={window} is too short for a correlation; use at least 20 sessions")
    blank = dict(window=window, threshold=threshold, recent_start=None, recent_end=None, previous_start=None,
                 previous_end=None, mean_abs_change=float("nan"), max_abs_change=float("nan"),
                 frobenius_distance=float("nan"), rebalance_suggested=False)
    if matrix.shape[1] < 2:
        return RegimeCheck(**blank, reason="fewer than two strategies: no correlations to compare")
    if len(matrix) < 2 * window:
        return RegimeCheck(**blank, reason=f"only {len(matrix)} sessions of common history, {2 * window} needed "
                                           f"for two {window}-session windows")
    recent, previous = matrix.iloc[-window:], matrix.iloc[-2 * window:-window]
    change = recent.corr().to_numpy() - previous.corr().to_numpy()
    upper = np.triu_indices(matrix.shape[1], k=1)
    pairs = np.abs(change[upper])
    valid = ~np.isnan(pairs)
    if not valid.any():
        return RegimeCheck(**blank, reason="no strategy pair varied in both windows")
    mean_change = float(pairs[valid].mean())
    largest = int(np.nanargmax(pairs))
    max_change = float(pairs[largest])
    frobenius = float(np.sqrt(np.nansum(change[upper] ** 2) * 2))
    names = matrix.columns
    pair = f"{names[upper[0][largest]]} / {names[upper[1][largest]]}"
    spans = (recent.index[0], recent.index[-1], previous.index[0], previous.index[-1])
    triggered = mean_change > threshold
    verdict = "exceeds" if triggered else "is within"
    reason = (f"mean |Δcorr| {mean_change:.3f} over {int(valid.sum())} pairs {verdict} threshold {threshold} "
              f"({spans[2]:%Y-%m-%d}–{spans[3]:%Y-%m-%d} vs {spans[0]:%Y-%m-%d}–{spans[1]:%Y-%m-%d}); "
              f"largest change {max_change:.3f} for {pair}")
    if triggered:
        reason = "rebalance suggested: " + reason
    return RegimeCheck(window=window, threshold=threshold, recent_start=spans[0], recent_end=spans[1],
                       previous_start=spans[2], previous_end=spans[3], mean_abs_change=mean_change,
                       max_abs_change=max_change, frobenius_distance=frobenius, rebalance_suggested=triggered,
                       reason=reason)
