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
def step_row(t, entries, exits, size, open_, close, stop_loss, take_profit, trail_stop, max_hold, scratch, state,
             held_size):
    """Row ``t`` of the state machine: ``entries``/``exits``/``size``/``open_``/``close`` are that row's
    (K,) values, ``scratch`` the columns' running state (:func:`machine_scratch`); fills the row's
    ``state`` and ``held_size``. Shared by :func:`resolve_nb` and the optimiser's fused signal kernel
    (``optimise.signals``), so both run the same rules. A row per call, not a cell: each call pays
    reference counts on its arrays, which per cell cost ~20x the arithmetic."""
    long, ref, peak, age, cur_size, entry_row = scratch
    use_sl, use_tp, use_tr = stop_loss == stop_loss, take_profit == take_profit, trail_stop == trail_stop
    for k in range(entries.shape[0]):
        was_long = long[k]
        if not was_long and not entries[k]:  # flat and no entry: nothing moves (cur_size is 0 when flat)
            state[k] = False
            held_size[k] = 0.0
            continue
        o = open_[k]
        c = close[k]
        if was_long and ref[k] != ref[k] and np.isfinite(o) and entry_row[k] < t:
            ref[k] = o
            peak[k] = o
        known = was_long and np.isfinite(ref[k])
        if known and np.isfinite(c):
            age[k] += 1
        if known and c > peak[k]:
            peak[k] = c
        stop = False
        if known:
            if use_sl and c <= ref[k] * (1.0 - stop_loss):
                stop = True
            if use_tp and c >= ref[k] * (1.0 + take_profit):
                stop = True
            if use_tr and c <= peak[k] * (1.0 - trail_stop):
                stop = True
            if max_hold != 0 and age[k] >= max_hold:
                stop = True
        en = entries[k]
        ex = exits[k]
        sz = size[k]
        leave = was_long and ((ex and not en) or stop)
        enter = (not was_long) and en and (not ex) and sz > 0
        now = (was_long and not leave) or enter
        long[k] = now
        if enter:
            cur_size[k] = sz
            entry_row[k] = t
        elif not now:
            cur_size[k] = 0.0
        if enter or leave:
            ref[k] = np.nan
            peak[k] = np.nan
            age[k] = 0
        state[k] = now
        held_size[k] = cur_size[k]


@njit(cache=True, nogil=True)
def machine_scratch(K):
    """The per-column scratch :func:`step_row` reads and writes: ``(long, ref, peak, age, cur_size, entry_row)``."""
    return (np.zeros(K, dtype=np.bool_), np.full(K, np.nan), np.full(K, np.nan), np.zeros(K, dtype=np.int64),
            np.zeros(K), np.full(K, -1, dtype=np.int64))


@njit(cache=True, nogil=True)
def resolve_nb(entries, exits, size, open_, close, stop_loss, take_profit, trail_stop, max_hold, state, held_size):
    """Fill ``state`` (bool) and ``held_size`` (float), both (T, K), from the signals and stops.

    ``stop_loss``/``take_profit``/``trail_stop`` are NaN when off, ``max_hold`` 0 when off;
    ``open_``/``close`` are (T, K). Same arithmetic and comparisons as the row-vectorised rules;
    rows outer, columns inner, so the (T, K) arrays are read in memory order.
    """
    T, K = entries.shape
    scratch = machine_scratch(K)
    for t in range(T):
        step_row(t, entries[t], exits[t], size[t], open_[t], close[t], stop_loss, take_profit, trail_stop, max_hold,
                 scratch, state[t], held_size[t])


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
