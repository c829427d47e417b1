"""The long-only position state machine with close-based stops, compiled with numba.

:func:`alphatwin_pipelines.strategies.filters.resolve_with_stops` and ``resolve`` (no stops)
call :func:`resolve_nb`; the rules are documented there. One column at a time, one row at a
time: the NumPy version looped over rows with a dozen whole-row array operations per row,
which cost ~100x more than the arithmetic for a 100-symbol market. This module imports numba,
so it is imported lazily (inside the functions that need it).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def resolve_nb(entries, exits, size, open_, close, stop_loss, take_profit, trail_stop, max_hold, state, held_size):
    """Fill ``state`` (bool) and ``held_size`` (float), both (T, K), from the signals and stops.

    ``stop_loss``/``take_profit``/``trail_stop`` are NaN when off, ``max_hold`` 0 when off;
    ``open_``/``close`` are (T, K). Same arithmetic and comparisons as the row-vectorised rules.
    """
    T, K = entries.shape
    use_sl, use_tp, use_tr = stop_loss == stop_loss, take_profit == take_profit, trail_stop == trail_stop
    for k in range(K):
        long = False
        ref = np.nan
        peak = np.nan
        age = 0
        cur_size = 0.0
        entry_row = -1
        for t in range(T):
            o = open_[t, k]
            c = close[t, k]
            if long and ref != ref and np.isfinite(o) and entry_row < t:
                ref = o
                peak = o
            known = long and np.isfinite(ref)
            if known and np.isfinite(c):
                age += 1
            if known and c > peak:
                peak = c
            stop = False
            if use_sl and known and c <= ref * (1.0 - stop_loss):
                stop = True
            if use_tp and known and c >= ref * (1.0 + take_profit):
                stop = True
            if use_tr and known and c <= peak * (1.0 - trail_stop):
                stop = True
            if max_hold != 0 and known and age >= max_hold:
                stop = True
            en = entries[t, k]
            ex = exits[t, k]
            sz = size[t, k]
            leave = long and ((ex and not en) or stop)
            enter = (not long) and en and (not ex) and sz > 0
            long = (long and not leave) or enter
            if enter:
                cur_size = sz
                entry_row = t
            elif not long:
                cur_size = 0.0
            if enter or leave:
                ref = np.nan
                peak = np.nan
                age = 0
            state[t, k] = long
            held_size[t, k] = cur_size


def resolve_columns(entries, exits, size, open_=None, close=None, *, stop_loss=np.nan, take_profit=np.nan,
                    trail_stop=np.nan, max_hold=0) -> tuple[np.ndarray, np.ndarray]:
    """``(state, held_size)`` of (T, K) signals; ``open_``/``close`` are needed only with stops."""
    entries = np.ascontiguousarray(entries, dtype=np.bool_)
    shape = entries.shape
    exits = np.ascontiguousarray(np.broadcast_to(exits, shape), dtype=np.bool_)
    size = np.ascontiguousarray(np.broadcast_to(size, shape), dtype=np.float64)
    nan = np.full((1, 1), np.nan)
    open_ = np.ascontiguousarray(np.broadcast_to(nan if open_ is None else open_, shape), dtype=np.float64)
    close = np.ascontiguousarray(np.broadcast_to(nan if close is None else close, shape), dtype=np.float64)
    state = np.empty(shape, dtype=np.bool_)
    held = np.empty(shape, dtype=np.float64)
    resolve_nb(entries, exits, size, open_, close, float(stop_loss), float(take_profit), float(trail_stop),
               int(max_hold), state, held)
    return state, held
