"""Per-symbol indicator kernels: TA-Lib functions on contiguous float64 NumPy arrays.

Every kernel takes one symbol's :class:`Bars` (rows in date order, no gaps in the arrays
and no non-finite prices) plus its parameters, and returns one array aligned with the rows,
or a dict of arrays for multi-output indicators. Values are NaN until the kernel has enough
rows. The price/volume inputs are the *as-of-latest* adjusted series; ``compute`` rescales
the results to "as of t" (see its docstring). TA-Lib's function API is called directly
(``talib.SMA(arr, timeperiod=...)``), never the abstract/pandas wrappers.

One exception: ADX is assembled from ``talib.TRANGE`` and ``talib.EMA`` (reproducing
``talib.ADX`` to ~1e-15 on tie-free data) because ``talib.ADX``'s directional-movement rule
is discontinuous at exact ties, which makes it depend on the last bit of adjusted prices;
see :func:`adx`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import talib

TRADING_DAYS = 252
_SQRT_YEAR = math.sqrt(TRADING_DAYS)
_PARKINSON = 1.0 / (4.0 * math.log(2.0))


class Bars(NamedTuple):
    """One symbol's rows; adjusted columns are as of the latest row in the data."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    raw_close: np.ndarray
    raw_volume: np.ndarray


def _lagged(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < x.size:
        out[k:] = x[:-k]
    return out


def simple_return(b: Bars, period: int) -> np.ndarray:
    return talib.ROCP(b.close, timeperiod=period)


def log_return(b: Bars, period: int) -> np.ndarray:
    return np.log(talib.ROCR(b.close, timeperiod=period))


def realised_vol(b: Bars, period: int) -> np.ndarray:
    """Annualised sample standard deviation (ddof=1) of ``period`` daily log returns."""
    lr = np.log(talib.ROCR(b.close, timeperiod=1))
    var = talib.VAR(lr, timeperiod=period, nbdev=1.0) * (period / (period - 1))
    return np.sqrt(np.maximum(var, 0.0) * TRADING_DAYS)


def parkinson_vol(b: Bars, period: int) -> np.ndarray:
    hl = np.log(b.high / b.low)
    return np.sqrt(talib.SMA(hl * hl, timeperiod=period) * _PARKINSON) * _SQRT_YEAR


def obv_window(b: Bars, period: int) -> np.ndarray:
    """OBV accumulated over the last ``period`` sessions (OBV's increments, summed).

    Plain OBV is a running total from wherever the data happens to start, so its level is
    neither comparable across symbols nor reproducible from a finite history; its change over
    a fixed window is both.
    """
    signed = np.empty_like(b.close)
    signed[0] = np.nan
    signed[1:] = np.sign(np.diff(b.close)) * b.volume[1:]
    return talib.SUM(signed, timeperiod=period)


def vwap(b: Bars, period: int) -> np.ndarray:
    typical = talib.TYPPRICE(b.high, b.low, b.close)
    pv = talib.SUM(typical * b.volume, timeperiod=period)
    vol = talib.SUM(b.volume, timeperiod=period)
    traded = talib.SUM((b.volume > 0).astype(np.float64), timeperiod=period)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(traded > 0.5, pv / vol, np.nan)


def volume_roc(b: Bars, period: int) -> np.ndarray:
    out = talib.ROCP(b.volume, timeperiod=period)
    out[~(_lagged(b.volume, period) > 0)] = np.nan  # talib reports 0 when the base is 0
    return out


def sma(b: Bars, timeperiod: int) -> np.ndarray:
    return talib.SMA(b.close, timeperiod=timeperiod)


def ema(b: Bars, timeperiod: int) -> np.ndarray:
    return talib.EMA(b.close, timeperiod=timeperiod)


def wma(b: Bars, timeperiod: int) -> np.ndarray:
    return talib.WMA(b.close, timeperiod=timeperiod)


def rsi(b: Bars, timeperiod: int) -> np.ndarray:
    return talib.RSI(b.close, timeperiod=timeperiod)


def macd(b: Bars, fastperiod: int, slowperiod: int, signalperiod: int) -> dict[str, np.ndarray]:
    line, signal, hist = talib.MACD(b.close, fastperiod=fastperiod, slowperiod=slowperiod, signalperiod=signalperiod)
    return {"macd": line, "signal": signal, "hist": hist}


def stochastic(b: Bars, fastk_period: int, slowk_period: int, slowd_period: int) -> dict[str, np.ndarray]:
    k, d = talib.STOCH(b.high, b.low, b.close, fastk_period=fastk_period, slowk_period=slowk_period,
                       slowk_matype=0, slowd_period=slowd_period, slowd_matype=0)
    return {"k": k, "d": d}


def bollinger(b: Bars, timeperiod: int, nbdev: float) -> dict[str, np.ndarray]:
    upper, mid, lower = talib.BBANDS(b.close, timeperiod=timeperiod, nbdevup=nbdev, nbdevdn=nbdev, matype=0)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        pctb = np.where(width > 0, (b.close - lower) / width, np.nan)
        bandwidth = width / mid
    return {"upper": upper, "mid": mid, "lower": lower, "pctb": pctb, "bandwidth": bandwidth}


def atr(b: Bars, timeperiod: int) -> np.ndarray:
    return talib.ATR(b.high, b.low, b.close, timeperiod=timeperiod)


#: Relative size under which Wilder's +move and -move count as equal (a tie: no direction).
TIE_TOLERANCE = 1e-10


def _wilder_from(x: np.ndarray, n: int, start: int, seed: float) -> np.ndarray:
    """``A[start] = seed``, then ``A[k] = A[k-1] + (x[k] - A[k-1]) / n`` (NaN before ``start``).

    ``talib.EMA`` with period ``2n - 1`` runs exactly this recursion (its alpha is 2/(2n) = 1/n)
    but seeds with the mean of its first 2n - 1 inputs; the recursion is linear, so swapping
    in another seed adds ``(seed - ema_seed) * (1 - 1/n) ** (k - start)``.
    """
    out = np.full(x.size, np.nan)
    p = 2 * n - 1
    if start >= x.size:
        return out
    lo = start - (p - 1)
    y = np.concatenate([np.zeros(max(-lo, 0)), x[max(lo, 0) :]])
    y[:p] = np.where(np.isfinite(y[:p]), y[:p], 0.0)  # only their mean matters, and it is replaced
    ema = talib.EMA(y, timeperiod=p)[p - 1 :]
    out[start:] = ema + (seed - ema[0]) * (1.0 - 1.0 / n) ** np.arange(ema.size)
    return out


def adx(b: Bars, timeperiod: int) -> np.ndarray:
    """Wilder's ADX with TA-Lib's exact seeding (same values as ``talib.ADX`` on tie-free data).

    Why not ``talib.ADX`` itself: its directional-movement rule compares the up-move
    ``high - prev high`` with the down-move ``prev low - low`` and counts neither when they are
    equal. Cent-quantised prices tie often, and multiplying a price history by an adjustment
    factor breaks such ties in the last bit, either way; one flipped tie moved ADX by up to ~10%
    on real S&P 500 data, so ADX computed on as-of-latest prices was not the as-of-t ADX. Here
    moves within ``TIE_TOLERANCE`` (relative) are ties, so ADX does not depend on the scale.
    Where a smoothed true range or DI sum is exactly 0, DX is 0 (TA-Lib skips such a DX).
    """
    n = timeperiod
    h, l, c = b.high, b.low, b.close
    out = np.full(c.size, np.nan)
    if c.size < 2 * n:
        return out
    up = np.r_[np.nan, np.diff(h)]
    down = np.r_[np.nan, -np.diff(l)]
    gap = up - down
    tol = TIE_TOLERANCE * (np.abs(h) + np.abs(l))
    plus = np.where((up > 0) & (gap > tol), up, 0.0)
    minus = np.where((down > 0) & (gap < -tol), down, 0.0)
    tr = talib.TRANGE(h, l, c)
    # TA-Lib seeds the smoothed DM/TR sums with the first n - 1 values (rows 1..n-1): S/n = mean * (n-1)/n.
    smooth = [_wilder_from(x, n, n - 1, float(np.sum(x[1:n])) / n) for x in (plus, minus, tr)]
    sp, sm, st = smooth
    with np.errstate(divide="ignore", invalid="ignore"):
        di_p, di_m = 100.0 * sp / st, 100.0 * sm / st
        dx = np.where((st > 0) & (di_p + di_m > 0), 100.0 * np.abs(di_m - di_p) / (di_p + di_m), 0.0)
    dx[:n] = np.nan
    out = _wilder_from(dx, n, 2 * n - 1, float(np.mean(dx[n : 2 * n])))
    return out


def donchian(b: Bars, period: int) -> dict[str, np.ndarray]:
    return {"high": talib.MAX(b.high, timeperiod=period), "low": talib.MIN(b.low, timeperiod=period)}


def dollar_volume(b: Bars, period: int) -> np.ndarray:
    return talib.SMA(b.raw_close * b.raw_volume, timeperiod=period)


def last_price(b: Bars) -> np.ndarray:
    return b.raw_close.copy()
