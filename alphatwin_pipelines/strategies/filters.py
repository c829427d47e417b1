"""Filters, sizing, stops and the long-only position state machine.

Everything is causal: a value at row t uses rows <= t only. Cross-sectional regimes (breadth,
equal-weight index) use every symbol of the market at rows <= t.

Position state machine (the same as vectorbt's ``from_signals`` with ``accumulate=False``):
a flat column enters at t when ``entries[t] & ~exits[t]`` and its size at t is > 0; a long
column exits at t when ``exits[t] & ~entries[t]`` or a stop fires at t. Simultaneous entry
and exit signals cancel. Signals are decided at the close; the fill is the engine's business.

Stops (levels 3, 4, 8, 9) are measured from the *entry fill*: the first finite open after
the entry row (the engine's default next-open fill). On every close from the fill row on:

* stop_loss:     close <= fill * (1 - stop_loss)
* take_profit:   close >= fill * (1 + take_profit)
* trailing_stop: close <= max(fill, highest close since the fill) * (1 - trail_stop)
* time_stop:     the position has been held for ``max_hold`` closes (the fill row counts 1)
"""

from __future__ import annotations

import numpy as np
import talib

from alphatwin_pipelines.strategies.families import Indicators, per_column
from alphatwin_pipelines.strategies.spec import VOL_RANK_WINDOW


def trend_ok(ind: Indicators, window: int) -> np.ndarray:
    """close > SMA(window) of the symbol's own bars."""
    with np.errstate(invalid="ignore"):
        return ind.market.close > ind.sma(window)


def vol_rank(ind: Indicators, vol_window: int, rank_window: int = VOL_RANK_WINDOW) -> np.ndarray:
    """Share of the last ``rank_window`` realised-vol values (row t included) at or below today's, on
    each symbol's own finite values (compiled: :mod:`.rolling_rank`)."""
    from alphatwin_pipelines.strategies.rolling_rank import rolling_rank

    rv = ind.realised_vol(vol_window)
    return ind.get(("vol_rank", vol_window, rank_window),
                   lambda: rolling_rank(np.ascontiguousarray(rv, dtype=np.float64), int(rank_window)))


def vol_ok(ind: Indicators, vol_window: int, vol_pct: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return vol_rank(ind, vol_window) <= vol_pct


def breadth(ind: Indicators, window: int) -> np.ndarray:
    """(T,) share of symbols with a valid SMA(window) whose close is above it (NaN if none)."""
    def compute():
        sma = ind.sma(window)
        valid = np.isfinite(sma) & np.isfinite(ind.market.close)
        with np.errstate(invalid="ignore", divide="ignore"):
            above = (valid & (ind.market.close > sma)).sum(axis=1)
            n = valid.sum(axis=1)
            return np.where(n > 0, above / np.maximum(n, 1), np.nan)
    return ind.get(("breadth", window), compute)


def breadth_ok(ind: Indicators, window: int, minimum: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (breadth(ind, window) >= minimum)[:, None]


def equal_weight_index(ind: Indicators) -> np.ndarray:
    """(T,) equal-weight index level: cumulative product of the mean bar-to-bar return."""
    def compute():
        rets = per_column(talib.ROCP, ind.market.close, timeperiod=1)
        finite = np.isfinite(rets)
        n = finite.sum(axis=1)
        mean = np.where(n > 0, np.where(finite, rets, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)
        return np.cumprod(1.0 + mean)
    return ind.get(("ew_index",), compute)


def index_ok(ind: Indicators, window: int) -> np.ndarray:
    """(T, 1): the equal-weight index closes above its SMA(window)."""
    def compute():
        level = equal_weight_index(ind)
        sma = talib.SMA(level, timeperiod=window) if level.size >= window else np.full(level.size, np.nan)
        with np.errstate(invalid="ignore"):
            return (level > sma)[:, None]
    return ind.get(("index_ok", window), compute)


def vol_target_size(ind: Indicators, target_vol: float, window: int) -> np.ndarray:
    """min(1, target_vol / realised vol(window)); 0 where the vol is unknown (entry cancelled)."""
    rv = ind.realised_vol(window)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.minimum(1.0, target_vol / rv)
    return np.where(np.isfinite(size) & (size > 0), size, 0.0)


def resolve(entries: np.ndarray, exits: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The state machine without stops: (position state, entry size within each trade).

    ``state[t]`` is True while long after the close of t. Returns ``(state, held_size)`` with
    ``held_size`` = the size read at the trade's entry row (0 when flat). An entry whose size
    is not > 0 is neutral (a flat column stays flat). Compiled: :mod:`.state_machine`.
    """
    from alphatwin_pipelines.strategies.state_machine import resolve_columns

    return resolve_columns(entries, exits, size)


def resolve_with_stops(entries, exits, size, open_, close, *, stop_loss=np.nan, take_profit=np.nan,
                       trail_stop=np.nan, max_hold=0) -> tuple[np.ndarray, np.ndarray]:
    """The state machine with close-based stops (module docstring), one column and row at a time
    (compiled: :mod:`.state_machine`). Returns ``(state, held_size)`` like :func:`resolve`."""
    from alphatwin_pipelines.strategies.state_machine import resolve_columns

    return resolve_columns(entries, exits, size, open_, close, stop_loss=stop_loss, take_profit=take_profit,
                           trail_stop=trail_stop, max_hold=max_hold)


def transitions(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit rows of a position state (entries[t]: flat at t-1, long at t)."""
    prev = np.vstack([np.zeros((1, state.shape[1]), dtype=bool), state[:-1]])
    return state & ~prev, ~state & prev
