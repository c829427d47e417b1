"""The volatility filter's rolling percentile rank, compiled (numba: imported lazily by ``filters.vol_rank``).

Definition (``filters.vol_rank``): on each symbol's own finite values (rows where the input is NaN
are dropped and stay NaN), the share of the last ``window`` values, the current one included, at or
below the current one; NaN until ``window`` values exist. One pass per column instead of NumPy's
(T, window) sliding view per column: studies and reports with the volatility filter rank dozens of
volatility windows. tests/test_report_streams.py checks it against pandas' rolling form of the
same definition.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rolling_rank(x, window):
    """(T, N) rank of ``x`` (module docstring), column by column."""
    T, N = x.shape
    out = np.full((T, N), np.nan)
    rows = np.empty(T, dtype=np.int64)
    vals = np.empty(T)
    for j in range(N):
        n = 0
        for t in range(T):
            v = x[t, j]
            if np.isfinite(v):
                rows[n] = t
                vals[n] = v
                n += 1
        for i in range(window - 1, n):
            cur = vals[i]
            below = 0
            for k in range(i - window + 1, i + 1):
                if vals[k] <= cur:
                    below += 1
            out[rows[i], j] = below / window
    return out
