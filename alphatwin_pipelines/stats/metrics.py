"""Performance metrics of daily return series, vectorised over columns (strategies).

Every function takes a 1-D series (``pd.Series`` or array of length T) or a 2-D ``(T, N)``
table of N strategies, and returns a float for 1-D input, a ``pd.Series`` per column for a
DataFrame, or an ``(N,)`` array for a 2-D array. Inputs are never modified.

Conventions, chosen once and used everywhere:

* Returns are simple per-period returns (0.01 = +1 %). ``periods_per_year`` defaults to 252.
* NaN means "no observation" (e.g. warm-up rows at the start). Moment statistics (Sharpe,
  Sortino, volatility, skewness, kurtosis, win rate, profit factor) drop NaNs; path
  statistics (equity, drawdowns) treat a NaN as a flat session (return 0).
* The equity curve starts at 1.0 *before* the first return, so a loss on day one is a drawdown.
* A statistic that is undefined (fewer than 2 observations, zero variance, no positions given)
  is NaN, silently: no RuntimeWarnings. Ratios with a zero denominator but a non-zero
  numerator (profit factor without losses, Sortino without downside) are +/-inf.
* ``kurtosis`` is the raw (Pearson) kurtosis, 3 for a normal distribution, as the Deflated
  Sharpe Ratio needs; skewness and kurtosis use population (biased) moments.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

# Re-exported: the wording lives in .explain to keep this module to the arithmetic, but
# callers have always imported explain from here.
from alphatwin_pipelines.stats.explain import explain

PERIODS_PER_YEAR = 252

__all__ = [
    "PERIODS_PER_YEAR", "n_observations", "total_return", "cagr", "volatility", "sharpe_ratio",
    "sortino_ratio", "drawdown", "max_drawdown", "max_drawdown_duration", "win_rate",
    "profit_factor", "skewness", "kurtosis", "exposure", "n_trades", "avg_holding_period",
    "compute_metrics", "explain",
]


def _as_2d(x) -> tuple[np.ndarray, object]:
    """A float (T, N) array (a copy or read-only use) plus a token saying how to shape results."""
    if isinstance(x, pd.DataFrame):
        return x.to_numpy(dtype=float, na_value=np.nan), x.columns
    if isinstance(x, pd.Series):
        return x.to_numpy(dtype=float, na_value=np.nan)[:, None], None
    arr = np.asarray(x, dtype=float)
    if arr.ndim in (0, 1):
        return arr.reshape(-1, 1), None
    if arr.ndim == 2:
        return arr, "array"
    raise ValueError(f"expected a 1-D or 2-D series of returns, got {arr.ndim} dimensions")


def _out(values, token):
    values = np.asarray(values, dtype=float)
    if token is None:
        return float(values[0])
    return values if isinstance(token, str) else pd.Series(values, index=token)


def _columnwise(impl):
    """Make ``impl(r2d, ...) -> (N,) array`` accept Series/DataFrame/arrays and shape its result."""

    @functools.wraps(impl)
    def wrapper(returns, *args, **kwargs):
        r, token = _as_2d(returns)
        return _out(impl(r, *args, **kwargs), token)

    return wrapper


def _moments(r: np.ndarray):
    """Count, mean, sample std (ddof=1) and centred moments m2, m3, m4 over valid rows."""
    valid = ~np.isnan(r)
    n = valid.sum(axis=0).astype(float)
    x = np.where(valid, r, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / n
        dev = np.where(valid, r - mean, 0.0)
        m2 = (dev**2).sum(axis=0) / n
        m3 = (dev**3).sum(axis=0) / n
        m4 = (dev**4).sum(axis=0) / n
        std = np.sqrt(m2 * n / (n - 1))
    scale = np.where(valid, np.abs(r), 0.0).max(axis=0, initial=0.0)
    degenerate = (n < 2) | (std <= 1e-12 * scale) | (scale == 0)
    std = np.where(degenerate, np.nan, std)
    mean = np.where(n > 0, mean, np.nan)
    return n, mean, std, m2, m3, m4, degenerate


def _per_period_rf(rf: float, periods_per_year: float) -> float:
    return (1.0 + rf) ** (1.0 / periods_per_year) - 1.0


@_columnwise
def n_observations(returns):
    """Number of non-NaN observations."""
    return (~np.isnan(returns)).sum(axis=0)


def _log_growth(r: np.ndarray) -> np.ndarray:
    """Sum of log(1 + r) over valid rows; -inf once a return of -100 % wipes the account out."""
    x = np.where(np.isnan(r), 0.0, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -1.0, np.log1p(np.maximum(x, -1.0)), -np.inf).sum(axis=0)


@_columnwise
def total_return(returns):
    """Compounded return over the whole series (NaN with no observations)."""
    n = (~np.isnan(returns)).sum(axis=0)
    return np.where(n > 0, np.expm1(_log_growth(returns)), np.nan)


@_columnwise
def cagr(returns, periods_per_year: float = PERIODS_PER_YEAR):
    """Compound annual growth rate: growth ** (1 / years) - 1, years = rows / periods_per_year.

    NaN with fewer than 2 observations (annualising one session is meaningless); -1 if the
    account is wiped out.
    """
    n = (~np.isnan(returns)).sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = np.expm1(_log_growth(returns) * periods_per_year / n)
    return np.where(n < 2, np.nan, out)


@_columnwise
def volatility(returns, periods_per_year: float = PERIODS_PER_YEAR):
    """Annualised standard deviation (ddof=1)."""
    return _moments(returns)[2] * math.sqrt(periods_per_year)


@_columnwise
def sharpe_ratio(returns, rf: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR,
                 annualise: bool = True):
    """Mean excess return over its standard deviation (ddof=1), times sqrt(periods_per_year).

    ``rf`` is an annual rate, converted to a per-period rate by compounding. With
    ``annualise=False`` this is the per-period SR that the PSR/DSR formulas take.
    """
    _, mean, std, *_ = _moments(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = (mean - _per_period_rf(rf, periods_per_year)) / std
    return sr * (math.sqrt(periods_per_year) if annualise else 1.0)


@_columnwise
def sortino_ratio(returns, rf: float = 0.0, periods_per_year: float = PERIODS_PER_YEAR):
    """Annualised mean excess return over the downside deviation.

    Downside deviation = sqrt(mean(min(excess, 0) ** 2)) over all valid observations (target =
    the risk-free rate). +inf if there is no downside and the mean excess return is positive.
    """
    n, mean, std, *_ = _moments(returns)
    rf_p = _per_period_rf(rf, periods_per_year)
    down = np.where(np.isnan(returns), 0.0, np.minimum(returns - rf_p, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        dd = np.sqrt((down**2).sum(axis=0) / n)
        ex = mean - rf_p
        out = np.where(dd > 0, ex / dd, np.where(ex > 0, np.inf, np.nan))
    return np.where(np.isnan(std), np.nan, out) * math.sqrt(periods_per_year)


def _equity(r: np.ndarray) -> np.ndarray:
    """(T + 1, N) equity curve starting at 1.0; NaN returns are flat sessions."""
    x = np.where(np.isnan(r), 0.0, r)
    return np.vstack([np.ones((1, r.shape[1])), np.cumprod(1.0 + x, axis=0)])


def drawdown(returns):
    """Drawdown below the running peak at each row (0 at a peak, 0.15 = 15 % below it)."""
    r, token = _as_2d(returns)
    eq = _equity(r)
    dd = (1.0 - eq / np.maximum.accumulate(eq, axis=0))[1:]
    if isinstance(returns, pd.DataFrame):
        return pd.DataFrame(dd, index=returns.index, columns=returns.columns)
    if isinstance(returns, pd.Series):
        return pd.Series(dd[:, 0], index=returns.index, name=returns.name)
    return dd if token is not None else dd[:, 0]


def _drawdown_stats(r: np.ndarray):
    """Max drawdown, its duration in sessions (peak to recovery, or to the end), recovered flag."""
    eq = _equity(r)
    dd = 1.0 - eq / np.maximum.accumulate(eq, axis=0)
    at_peak = dd <= 1e-12
    steps = np.arange(eq.shape[0])[:, None]
    last_peak = np.maximum.accumulate(np.where(at_peak, steps, 0), axis=0)
    cols = np.arange(eq.shape[1])
    trough = dd.argmax(axis=0)
    mdd = dd[trough, cols]
    back = at_peak & (steps > trough)
    recovered = back.any(axis=0)
    end = np.where(recovered, back.argmax(axis=0), eq.shape[0] - 1)
    duration = np.where(mdd > 1e-12, end - last_peak[trough, cols], 0).astype(float)
    recovered = np.where(mdd > 1e-12, recovered, True).astype(float)
    none = (~np.isnan(r)).sum(axis=0) == 0
    return tuple(np.where(none, np.nan, v) for v in (mdd, duration, recovered))


@_columnwise
def max_drawdown(returns):
    """Largest peak-to-trough fall of the equity curve, as a positive fraction (0.15 = 15 %)."""
    return _drawdown_stats(returns)[0]


@_columnwise
def max_drawdown_duration(returns):
    """Sessions from the peak before the maximum drawdown to its recovery (or to the last row).

    Counted in rows: a loss on row 1 recovered on row 3 lasted 3 sessions (the equity curve's
    starting point, before row 1, is the peak). 0 when there is no drawdown.
    """
    return _drawdown_stats(returns)[1]


@_columnwise
def win_rate(returns):
    """Share of non-flat observations that are positive (flat = exactly 0, e.g. out of market)."""
    wins = (returns > 0).sum(axis=0)
    active = wins + (returns < 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(active > 0, wins / active, np.nan)


@_columnwise
def profit_factor(returns):
    """Sum of gains over the absolute sum of losses (inf without losses, NaN if both are 0)."""
    gains = np.where(returns > 0, returns, 0.0).sum(axis=0)
    losses = -np.where(returns < 0, returns, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.where(losses > 0, gains / losses, np.where(gains > 0, np.inf, np.nan))


@_columnwise
def skewness(returns):
    """Population skewness m3 / m2**1.5 (NaN with < 3 observations or zero variance)."""
    n, _, _, m2, m3, _, degenerate = _moments(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(degenerate | (n < 3), np.nan, m3 / m2**1.5)


@_columnwise
def kurtosis(returns):
    """Raw (Pearson, non-excess) kurtosis m4 / m2**2: 3 for a normal distribution."""
    n, _, _, m2, _, m4, degenerate = _moments(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(degenerate | (n < 4), np.nan, m4 / m2**2)


def _position_stats(p: np.ndarray):
    """Exposure, trade count and average holding period from a (T, N) position array.

    A trade opens whenever the position's sign changes to non-zero (flat -> long, flat ->
    short, or a flip, which closes one trade and opens another), so every in-market session
    belongs to exactly one trade and avg holding = sessions in market / trades. NaN positions
    count as flat; exposure is over the rows where the position is known.
    """
    known = (~np.isnan(p)).sum(axis=0).astype(float)
    side = np.sign(np.where(np.isnan(p), 0.0, p))
    prev = np.vstack([np.zeros((1, side.shape[1])), side[:-1]])
    trades = ((side != 0) & (side != prev)).sum(axis=0).astype(float)
    held = (side != 0).sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(known > 0, held / known, np.nan), trades,
                np.where(trades > 0, held / trades, np.nan))


@_columnwise
def exposure(positions):
    """Fraction of sessions with a non-zero position."""
    return _position_stats(positions)[0]


@_columnwise
def n_trades(positions):
    """Number of trades (entries and sign flips) in a position series."""
    return _position_stats(positions)[1]


@_columnwise
def avg_holding_period(positions):
    """Average number of sessions a trade stays open."""
    return _position_stats(positions)[2]


def compute_metrics(returns, positions=None, trade_returns=None, rf: float = 0.0,
                    periods_per_year: float = PERIODS_PER_YEAR):
    """Every metric at once: a ``dict`` for one series, a DataFrame (row per strategy) for many.

    ``positions`` has the shape of ``returns`` (pandas inputs are aligned on labels) and gives
    exposure, number of trades and average holding period (NaN without it). ``trade_returns``
    (1-D, one return per closed trade; single series only) makes win rate and profit factor
    per trade instead of per session.
    """
    r, token = _as_2d(returns)
    mdd, duration, recovered = _drawdown_stats(r)
    out = {
        "n_obs": n_observations.__wrapped__(r),
        "total_return": total_return.__wrapped__(r),
        "cagr": cagr.__wrapped__(r, periods_per_year),
        "volatility": volatility.__wrapped__(r, periods_per_year),
        "sharpe": sharpe_ratio.__wrapped__(r, rf, periods_per_year),
        "sortino": sortino_ratio.__wrapped__(r, rf, periods_per_year),
        "max_drawdown": mdd,
        "max_drawdown_duration": duration,
        "max_drawdown_recovered": recovered,
        "win_rate": win_rate.__wrapped__(r),
        "profit_factor": profit_factor.__wrapped__(r),
        "skewness": skewness.__wrapped__(r),
        "kurtosis": kurtosis.__wrapped__(r),
    }
    expo = trades = hold = np.full(r.shape[1], np.nan)
    if positions is not None:
        if isinstance(positions, pd.Series) and isinstance(returns, pd.Series):
            positions = positions.reindex(returns.index)  # align on dates, not on row numbers
        elif isinstance(positions, pd.DataFrame) and isinstance(returns, pd.DataFrame):
            positions = positions.reindex(index=returns.index, columns=returns.columns)
        p = _as_2d(positions)[0]
        if p.shape[1] != r.shape[1]:
            raise ValueError("positions must have one column per return column")
        expo, trades, hold = _position_stats(p)
    if trade_returns is not None:
        if r.shape[1] != 1:
            raise ValueError("trade_returns is only supported for a single return series")
        t = _as_2d(trade_returns)[0]
        out["win_rate"] = win_rate.__wrapped__(t)
        out["profit_factor"] = profit_factor.__wrapped__(t)
        if positions is None:
            trades = n_observations.__wrapped__(t).astype(float)
    out.update(exposure=expo, n_trades=trades, avg_holding_period=hold)
    if token is None:
        return {k: float(np.asarray(v, dtype=float)[0]) for k, v in out.items()}
    frame = pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in out.items()})
    if not isinstance(token, str):
        frame.index = token
    return frame
