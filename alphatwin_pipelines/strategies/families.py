"""The strategy families: causal indicator kernels and each family's raw entry/exit rules.

Indicators are TA-Lib functions on contiguous float64 NumPy arrays, one symbol (column) at a
time, on that symbol's *own* bars: rows where the symbol has no bar (NaN close) are dropped
before the call and the result is scattered back, so a halt or a late listing never poisons
a running sum. Every value at row t uses rows <= t only.

Raw rules (before filters, stops and the position state machine):

====================== ======================================================= ================================
family                 entry at the close of t                                 exit at the close of t
====================== ======================================================= ================================
ma_cross               fast MA crosses above slow MA (SMA or EMA, ``ma_type``)  fast MA < slow MA
rsi_reversion          RSI(period) crosses below ``lower``                      RSI > ``upper``
bollinger_reversion    close crosses below the lower band (period, n_std)      close >= middle band (SMA)
ts_momentum            lookback return crosses above ``threshold``             lookback return < -threshold
donchian_breakout      close > highest high of the previous entry_window bars  close < lowest low of the
                                                                               previous exit_window bars
adx_trend              min(+DI - -DI, ADX - adx_min) crosses above 0: a trend  +DI < -DI
                       that is up and strong (Wilder's DMI, ``period``)
volume_momentum        min(lookback return, relative volume - volume_ratio)    lookback return < 0
                       crosses above 0 (relative volume = SMA(volume, 5) /
                       SMA(volume, volume_window))
====================== ======================================================= ================================

"Crosses above" at t means ``a[t] > b[t]`` and ``a[p] <= b[p]`` at the symbol's previous bar p.
"""

from __future__ import annotations

import weakref
from typing import Callable

import numpy as np
import pandas as pd
import talib

from alphatwin_pipelines.strategies.market import MarketArrays

TRADING_DAYS = 252


#: id -> (weak reference, column-major copy) of read-only arrays that own their data (the market's
#: fields): every indicator of a market reads the same few, and copying them was a large share of its cost.
_COLUMN_MAJOR: dict[int, tuple] = {}


def _column_major(a: np.ndarray) -> np.ndarray:
    """``a.T`` C-contiguous; kept while ``a`` lives when ``a`` cannot change (read-only, owns its data)."""
    if a.flags.writeable or not a.flags.owndata:
        return np.ascontiguousarray(a.T)
    key = id(a)
    hit = _COLUMN_MAJOR.get(key)
    if hit is not None and hit[0]() is a:
        return hit[1]
    copy = np.ascontiguousarray(a.T)
    copy.flags.writeable = False
    _COLUMN_MAJOR[key] = (weakref.ref(a, lambda _ref, key=key, cache=_COLUMN_MAJOR: cache.pop(key, None)), copy)
    return copy


def per_column(fn: Callable[..., np.ndarray], *arrays: np.ndarray, **kwargs) -> np.ndarray:
    """Apply a 1-D kernel to each column on that column's rows where every input is finite."""
    T, N = arrays[0].shape
    out = np.full((T, N), np.nan)
    cols_major = [_column_major(a) for a in arrays]
    for j in range(N):
        cols = [a[j] for a in cols_major]
        valid = np.isfinite(cols[0])
        for c in cols[1:]:
            valid &= np.isfinite(c)
        n = int(valid.sum())
        if n == T:
            out[:, j] = fn(*cols, **kwargs)
        elif n:
            out[valid, j] = fn(*[np.ascontiguousarray(c[valid]) for c in cols], **kwargs)
    return out


def previous_valid(x: np.ndarray) -> np.ndarray:
    """For each row, the last finite value strictly before it in the same column (else NaN)."""
    T = x.shape[0]
    finite = np.isfinite(x)
    rows = np.where(finite, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(rows, axis=0)
    prev = np.vstack([np.full((1, x.shape[1]), -1), last[:-1]])
    out = np.take_along_axis(x, np.maximum(prev, 0), axis=0)
    return np.where(prev >= 0, out, np.nan)


def ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs down each column (leading NaNs stay). The result may be read-only.

    pandas' ``ffill`` is used as a plain array kernel: faster than an index-accumulate in NumPy
    on grid-sized arrays, which matters for grid backtests.
    """
    if x.ndim == 1:
        return pd.Series(x, copy=False).ffill().to_numpy()
    return pd.DataFrame(x, copy=False).ffill().to_numpy()


def cross_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    with np.errstate(invalid="ignore"):
        return (d > 0) & (previous_valid(d) <= 0)


def cross_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    with np.errstate(invalid="ignore"):
        return (d < 0) & (previous_valid(d) >= 0)


def _realised_vol_1d(close: np.ndarray, window: int) -> np.ndarray:
    lr = np.log(talib.ROCR(close, timeperiod=1))
    var = talib.VAR(lr, timeperiod=window, nbdev=1.0) * (window / (window - 1))
    return np.sqrt(np.maximum(var, 0.0) * TRADING_DAYS)


def _shifted_max(high: np.ndarray, window: int) -> np.ndarray:
    out = np.full(high.size, np.nan)
    out[1:] = talib.MAX(high, timeperiod=window)[:-1]
    return out


def _shifted_min(low: np.ndarray, window: int) -> np.ndarray:
    out = np.full(low.size, np.nan)
    out[1:] = talib.MIN(low, timeperiod=window)[:-1]
    return out


def _bbands(close: np.ndarray, window: int, n_std: float) -> np.ndarray:
    _, _, lower = talib.BBANDS(close, timeperiod=window, nbdevup=n_std, nbdevdn=n_std, matype=0)
    return lower


#: bytes of arrays an indicator cache may hold: adding one past it first drops the oldest arrays.
#: A run's studies, a walk-forward's windows and a report's trial streams each share one cache, and
#: parameters drawn from float ranges (Bollinger widths, filter windows) add one (T, N) array per
#: trial and key, so an unbounded cache grew to 16 GB in a weekly run (benchmarks/README.md).
INDICATOR_BUDGET = 1 << 30


#: every Indicators of this process that has cached an array (registered at the first array, so
#: unpickled copies, e.g. a cluster worker's copy of a stage's shared object, count too)
_FILLED: "weakref.WeakSet[Indicators]" = weakref.WeakSet()


def release_caches() -> None:
    """Empty every indicator cache of this process. A stage calls it when its tasks end: a
    worker's copy of a stage's shared cache otherwise stays alive (Dask keeps references after the
    data is released) and holds up to the budget into the next stage (benchmarks/README.md). Safe
    beside other work in the process: a cache only saves work, and an emptied one is refilled with
    the same values."""
    for cache in list(_FILLED):
        cache.clear()


def make_room(cache: dict, incoming: int) -> None:
    """Drop ``cache``'s oldest arrays until ``incoming`` more bytes fit in :data:`INDICATOR_BUDGET`
    (a cache: a dropped array is computed again when asked for, to the same values)."""
    held = sum(v.nbytes for v in cache.values() if isinstance(v, np.ndarray))
    while cache and held + incoming > INDICATOR_BUDGET:
        dropped = cache.pop(next(iter(cache)))
        held -= dropped.nbytes if isinstance(dropped, np.ndarray) else 0


class Indicators:
    """Per-market indicator cache: each (indicator, parameters) is computed once per market while
    it stays within :data:`INDICATOR_BUDGET`.

    A grid of 50 parameter sets shares its moving averages, bands and filters this way.
    """

    def __init__(self, market: MarketArrays):
        self.market = market
        self._cache: dict[tuple, np.ndarray] = {}

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            value = compute()
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
                make_room(self._cache, value.nbytes)
            _FILLED.add(self)
            self._cache[key] = value
        return value

    def nbytes(self) -> int:
        """Bytes the cached arrays hold."""
        return sum(v.nbytes for v in self._cache.values() if isinstance(v, np.ndarray))

    def clear(self) -> None:
        self._cache.clear()

    def sma(self, window: int) -> np.ndarray:
        return self.get(("sma", window), lambda: per_column(talib.SMA, self.market.close, timeperiod=window))

    def ema(self, window: int) -> np.ndarray:
        return self.get(("ema", window), lambda: per_column(talib.EMA, self.market.close, timeperiod=window))

    def ma(self, kind: str, window: int) -> np.ndarray:
        return self.sma(window) if kind == "sma" else self.ema(window)

    def rsi(self, period: int) -> np.ndarray:
        return self.get(("rsi", period), lambda: per_column(talib.RSI, self.market.close, timeperiod=period))

    def bb_lower(self, period: int, n_std: float) -> np.ndarray:
        return self.get(("bb_lower", period, n_std),
                        lambda: per_column(_bbands, self.market.close, window=period, n_std=n_std))

    def roc(self, lookback: int) -> np.ndarray:
        return self.get(("roc", lookback), lambda: per_column(talib.ROCP, self.market.close, timeperiod=lookback))

    def prior_high(self, window: int) -> np.ndarray:
        return self.get(("prior_high", window), lambda: per_column(_shifted_max, self.market.high, window=window))

    def prior_low(self, window: int) -> np.ndarray:
        return self.get(("prior_low", window), lambda: per_column(_shifted_min, self.market.low, window=window))

    def realised_vol(self, window: int) -> np.ndarray:
        """Annualised sample std (ddof=1) of ``window`` daily log returns of the symbol's bars."""
        return self.get(("rv", window), lambda: per_column(_realised_vol_1d, self.market.close, window=window))


class PrefixIndicators(Indicators):
    """An :class:`Indicators` of ``market`` that also reads and feeds ``shared``, a cache filled by
    markets that extend ``market`` (the same first rows, more rows after): their arrays cut to
    ``market``'s rows stand in for computing.

    Valid because every indicator is causal (row t reads rows <= t only, each computed from the
    first row on): tests/test_prefix_indicators.py checks each one bit for bit. Walk-forward windows
    cut one market at growing train ends: run the longest first and the others read its arrays.
    """

    def __init__(self, market: MarketArrays, shared: dict):
        super().__init__(market)
        self.shared, self.rows = shared, len(market.dates)

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        value = self._cache.get(key)
        if value is None:
            known = self.shared.get(key)
            if isinstance(known, np.ndarray) and known.ndim and known.shape[0] >= self.rows:
                value = self._cache[key] = known[: self.rows]  # a read-only view
                _FILLED.add(self)
            else:
                value = super().get(key, compute)
                if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == self.rows:
                    make_room(self.shared, value.nbytes)
                    self.shared[key] = value
        return value


def _dmi(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, which: str) -> np.ndarray:
    fn = {"adx": talib.ADX, "plus": talib.PLUS_DI, "minus": talib.MINUS_DI}[which]
    return fn(high, low, close, timeperiod=period)


def adx_parts(ind: Indicators, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ADX, +DI, -DI) of ``period`` on each symbol's own bars (TA-Lib, Wilder smoothing)."""
    m = ind.market
    return tuple(ind.get(("dmi", which, period),
                         lambda which=which: per_column(_dmi, m.high, m.low, m.close, period=period, which=which))
                 for which in ("adx", "plus", "minus"))


def relative_volume(ind: Indicators, window: int) -> np.ndarray:
    """SMA(volume, 5) / SMA(volume, window) of the symbol's own bars (NaN while either is unknown)."""
    def compute():
        fast = per_column(talib.SMA, ind.market.volume, timeperiod=5)
        slow = per_column(talib.SMA, ind.market.volume, timeperiod=window)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(slow > 0, fast / slow, np.nan)
    return ind.get(("rel_volume", window), compute)


def ma_cross(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    fast, slow = ind.ma(p["ma_type"], p["fast"]), ind.ma(p["ma_type"], p["slow"])
    with np.errstate(invalid="ignore"):
        return cross_above(fast, slow), fast < slow


def rsi_reversion(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    rsi = ind.rsi(p["period"])
    with np.errstate(invalid="ignore"):
        return cross_below(rsi, np.full_like(rsi, p["lower"])), rsi > p["upper"]


def bollinger_reversion(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    close = ind.market.close
    lower, mid = ind.bb_lower(p["period"], p["n_std"]), ind.sma(p["period"])
    with np.errstate(invalid="ignore"):
        return cross_below(close, lower), close >= mid


def ts_momentum(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    mom = ind.roc(p["lookback"])
    with np.errstate(invalid="ignore"):
        return cross_above(mom, np.full_like(mom, p["threshold"])), mom < -p["threshold"]


def donchian_breakout(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    close = ind.market.close
    with np.errstate(invalid="ignore"):
        return close > ind.prior_high(p["entry_window"]), close < ind.prior_low(p["exit_window"])


def adx_trend(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    adx, plus, minus = adx_parts(ind, p["period"])
    strength = np.minimum(plus - minus, adx - p["adx_min"])  # NaN while any part is unknown
    with np.errstate(invalid="ignore"):
        return cross_above(strength, np.zeros_like(strength)), plus < minus


def volume_momentum(ind: Indicators, p) -> tuple[np.ndarray, np.ndarray]:
    mom = ind.roc(p["lookback"])
    push = np.minimum(mom, relative_volume(ind, p["volume_window"]) - p["volume_ratio"])
    with np.errstate(invalid="ignore"):
        return cross_above(push, np.zeros_like(push)), mom < 0


#: family name -> raw rule ``(indicators, params) -> (entries, exits)``.
FAMILY_RULES: dict[str, Callable] = {
    "ma_cross": ma_cross,
    "rsi_reversion": rsi_reversion,
    "bollinger_reversion": bollinger_reversion,
    "ts_momentum": ts_momentum,
    "donchian_breakout": donchian_breakout,
    "adx_trend": adx_trend,
    "volume_momentum": volume_momentum,
}
