"""``compute_features``: every declared feature, point in time, for a cleaned OHLCV panel.

Point in time
-------------
A feature at session ``t`` uses only rows dated ``<= t`` (every kernel is causal and the
normalisations look at the same session or the past), and prices are expressed *as adjusted
as of t*: ATR, moving averages, Bollinger bands, VWAP and Donchian levels are in the dollars a
trader saw at the close of ``t``; OBV is in the shares of that day.

``cleaned_ohlcv`` carries prices adjusted as of the *latest* session. With backward
adjustment the as-of-latest price of any row ``k <= t`` is its as-of-``t`` price times the
product of the factors of the events dated after ``t``, one number per (symbol, t)::

    adj_latest(k) = adj_as_of_t(k) * G(t),   G(t) = adj_close(t) / close(t)

(``adj_as_of_t(t)`` is the raw close, since no event after ``t`` touches it as of ``t``).
Likewise for volume, splits after ``t`` multiply every earlier volume by
``H(t) = adj_volume(t) / volume(t)``: ``adj_volume_latest(k) = adj_volume_as_of_t(k) * H(t)``.
So the exact, efficient method is to run each indicator *once* on the as-of-latest series
and then, at each row ``t``:

* ``price``-unit features (degree-1 homogeneous in price: SMA/EMA/WMA, MACD, ATR, Bollinger
  bands, VWAP, Donchian) are divided by ``G(t)``;
* ``volume``-unit features (OBV) are divided by ``H(t)``: as-of-latest volumes are *larger*
  than as-of-``t`` ones by the later splits, so we divide, not multiply;
* scale-free features (returns, volatilities, RSI, stochastics, %B, bandwidth, ADX, volume ROC
  and everything normalised) need no change: the common factor cancels. This holds in floating
  point too (to ~1e-12) because no kernel compares two *different* price moves exactly; ADX's
  up-move vs down-move test, the one that did, uses a relative tie tolerance (``indicators.adx``);
* ``dollar_volume_20`` (mean raw close x raw volume) and ``price`` (raw close) are computed
  from the raw columns: they already are what traders saw.

Where a row has no volume (forward-filled sessions carry ``volume == 0``), ``H(t)`` is carried
from the symbol's neighbouring rows through the ``split_ratio`` column, using
``log H(t) + sum_{s<=t} log r_s = constant``.

Incremental use
---------------
``compute_features(history, sessions=[new])`` with ``history`` holding at least the last
``max_lookback()`` sessions up to and including ``new`` returns the same values for ``new`` as a
full-history run: exactly for finite-window features and within 1e-6 relative (by design
< 1e-7 of the seed error) for recursive ones (see ``spec``). Lookbacks count the symbol's own
rows, so a symbol with missing sessions inside the window has less history than that.

Rows with a non-finite price, adjusted price or adjusted volume are left out of the
computation (as if the session were missing) and get NaN features. Inputs are never mutated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from alphatwin_pipelines.features import normalise as nrm
from alphatwin_pipelines.features.indicators import Bars
from alphatwin_pipelines.features.spec import FEATURES, FeatureSpec

REQUIRED_COLUMNS: tuple[str, ...] = (
    "symbol", "date", "close", "volume", "split_ratio",
    "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume",
)
_CS = {nrm.cs_zscore, nrm.cs_minmax, nrm.cs_robust, nrm.cs_rank}


def _days(values) -> np.ndarray:
    return np.asarray(pd.to_datetime(values).to_numpy(dtype="datetime64[D]")).view(np.int64)


def _order(codes: np.ndarray, days: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    same = codes[1:] == codes[:-1]
    if np.all((codes[1:] > codes[:-1]) | (same & (days[1:] > days[:-1]))):
        return np.arange(codes.size)
    order = np.lexsort((days, codes))
    dup = np.flatnonzero((codes[order][1:] == codes[order][:-1]) & (days[order][1:] == days[order][:-1]))
    if dup.size:
        i = order[dup[0]]
        raise ValueError(f"duplicate row for ({symbols[i]}, {np.datetime64(int(days[i]), 'D')})")
    return order


def _segments(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if codes.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return starts, np.r_[starts[1:], codes.size]


def _fill_within(values: np.ndarray, ok: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray) -> np.ndarray:
    """Replace entries where ``~ok`` by the previous ok entry of the same segment, else the next."""
    n = values.size
    pos = np.arange(n)
    prev = np.maximum.accumulate(np.where(ok, pos, -1))
    nxt = np.minimum.accumulate(np.where(ok, pos, n)[::-1])[::-1]
    src = np.where(prev >= seg_start, prev, np.where(nxt < seg_end, nxt, -1))
    out = np.where(src >= 0, values[np.maximum(src, 0)], np.nan)
    return np.where(ok, values, out)


def _volume_factor(adj_volume, volume, split_ratio, starts, ends, seg_id) -> np.ndarray:
    """H(t) = adj_volume(t) / volume(t); rows without volume get it through the split ratios."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = adj_volume / volume
    ok = (volume > 0) & np.isfinite(h) & (h > 0)
    if ok.all():
        return h
    log_r = np.log(np.where(np.isfinite(split_ratio) & (split_ratio > 0), split_ratio, 1.0))
    # sum of log r_s for s <= t, summed within each symbol: a running sum over the whole panel
    # minus its value before the symbol would make a symbol's rounding depend on the symbols
    # before it, and a symbol shard would differ from the whole panel in the last bits
    cum = np.empty_like(log_r)
    for a, b in zip(starts.tolist(), ends.tolist()):
        np.cumsum(log_r[a:b], out=cum[a:b])
    with np.errstate(divide="ignore", invalid="ignore"):
        constant = np.where(ok, np.log(h) + cum, np.nan)
    constant = _fill_within(constant, ok, starts[seg_id], ends[seg_id])
    return np.where(ok, h, np.exp(constant - cum))


def _indicator_groups(specs: list[FeatureSpec]) -> list[tuple]:
    groups: dict[tuple, list[FeatureSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.function, spec.parameters), []).append(spec)
    return [(fn, dict(params), members) for (fn, params), members in groups.items()]


def _run_indicators(arrays: dict[str, np.ndarray], starts, ends, specs: list[FeatureSpec],
                    out: dict[str, np.ndarray]) -> None:
    """Run every kernel once per symbol and write each output into ``out[name]`` (all rows)."""
    groups = _indicator_groups(specs)
    cols = [arrays[c] for c in Bars._fields]
    for a, b in zip(starts.tolist(), ends.tolist()):
        bars = Bars(*(c[a:b] for c in cols))
        for fn, kwargs, members in groups:
            res = fn(bars, **kwargs)
            for spec in members:
                out[spec.name][a:b] = res if spec.output is None else res[spec.output]


class FeatureBlock(NamedTuple):
    """``compute_block``'s output as arrays: row ``k`` is symbol ``names[codes[k]]`` on day
    ``days[k]`` (days since the epoch), sorted by (symbol, day); ``values[:, j]`` is
    ``FEATURES[j]`` (a Fortran-ordered view, each column contiguous)."""

    names: np.ndarray
    codes: np.ndarray
    days: np.ndarray
    values: np.ndarray


def compute_features(cleaned: pd.DataFrame, sessions: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """Features for every row of ``cleaned`` (or only rows dated in ``sessions``).

    Returns ``symbol``, ``date`` (``datetime64[ns]``) and one float64 column per entry of
    ``FEATURES``, in that order, sorted by (symbol, date) with a fresh RangeIndex. With
    ``sessions`` given, earlier rows still serve as lookback; later rows are ignored.
    """
    names, codes, days, values = compute_block(cleaned, sessions)
    frame = pd.DataFrame(np.asfortranarray(values), columns=[spec.name for spec in FEATURES], copy=False)
    frame.insert(0, "date", pd.to_datetime(days.astype("datetime64[D]")).astype("datetime64[ns]"))
    frame.insert(0, "symbol", pd.array(names[codes], dtype="string"))
    return frame


def compute_block(cleaned: pd.DataFrame, sessions: pd.DatetimeIndex | None = None,
                  normalise: bool = True) -> FeatureBlock:
    """``compute_features`` without building a frame: one feature matrix, no second copy of it.

    The matrix is allocated once; rows kept only as lookback are dropped by moving the
    output rows up within it, column by column, so peak memory is one matrix plus one column.
    With ``normalise=False`` the cross-sectional columns are left for ``normalise_sessions``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in cleaned.columns]
    if missing:
        raise ValueError(f"compute_features needs columns {missing}; cleaned_ohlcv provides {list(REQUIRED_COLUMNS)}")
    symbols = cleaned["symbol"].to_numpy(dtype=object)
    codes, names = pd.factorize(symbols, sort=True)
    if (codes < 0).any():
        raise ValueError("compute_features got rows without a symbol; drop or fix them in cleaned_ohlcv first")
    days = _days(cleaned["date"]) if len(cleaned) else np.empty(0, dtype=np.int64)
    order = _order(codes, days, symbols)
    wanted = None
    if sessions is not None:
        wanted = np.unique(_days(pd.DatetimeIndex(sessions)))
        if wanted.size:
            order = order[days[order] <= wanted[-1]]
        else:
            order = order[:0]
    codes, days = codes[order], days[order]

    def col(name: str) -> np.ndarray:
        return cleaned[name].to_numpy(dtype=np.float64, na_value=np.nan)[order]  # fancy index: a copy

    raw_close, raw_volume, split_ratio = col("close"), col("volume"), col("split_ratio")
    adj = {c: col(f"adj_{c}") for c in ("open", "high", "low", "close", "volume")}
    valid = np.isfinite(raw_close) & (raw_close > 0) & np.isfinite(raw_volume)
    for c in adj.values():
        valid &= np.isfinite(c)
    valid &= (adj["close"] > 0) & (adj["low"] > 0)
    vidx = np.flatnonzero(valid)
    sel_idx = np.flatnonzero(np.isin(days, wanted)) if wanted is not None else np.arange(days.size)

    # Compact arrays: valid rows only, one contiguous run per symbol.
    arrays = {k: np.ascontiguousarray(v[vidx]) for k, v in adj.items()}
    arrays["raw_close"], arrays["raw_volume"] = raw_close[vidx], raw_volume[vidx]
    vcodes = codes[vidx]
    starts, ends = _segments(vcodes)
    seg_id = np.cumsum(np.r_[True, vcodes[1:] != vcodes[:-1]]) - 1 if vidx.size else vcodes

    # One column-major block for every feature: each column is a contiguous array. It has room
    # for the output rows too (more than the valid rows when unusable rows are requested).
    position = {spec.name: j for j, spec in enumerate(FEATURES)}
    cblock = np.empty((max(vidx.size, sel_idx.size), len(FEATURES)), order="F")
    values = {spec.name: cblock[: vidx.size, position[spec.name]] for spec in FEATURES}
    base = [spec for spec in FEATURES if spec.of is None]
    _run_indicators(arrays, starts, ends, base, values)

    # Point-in-time rescaling (module docstring).
    g = arrays["close"] / arrays["raw_close"]
    h = g
    if vidx.size:
        h = _volume_factor(arrays["volume"], arrays["raw_volume"], split_ratio[vidx], starts, ends, seg_id)
    for spec in base:
        if spec.basis == "adjusted" and spec.unit == "price":
            values[spec.name] /= g
        elif spec.basis == "adjusted" and spec.unit == "volume":
            values[spec.name] /= h

    for spec in FEATURES:
        if spec.of is not None and spec.function is nrm.ts_zscore:
            values[spec.name][:] = nrm.ts_zscore(values[spec.of], starts, ends, spec.kwargs["window"])

    # Output rows: valid or not, restricted to the requested sessions, moved up in place.
    if not (sel_idx.size == vidx.size == days.size):
        where_valid = np.full(days.size, -1, dtype=np.int64)
        where_valid[vidx] = np.arange(vidx.size)
        src = where_valid[sel_idx]
        has, src = src >= 0, np.maximum(src, 0)
        for j in range(len(FEATURES)):
            column = cblock[:, j]
            column[: sel_idx.size] = np.where(has, column[src], np.nan) if vidx.size else np.nan
    block = cblock[: sel_idx.size]

    out_days = days[sel_idx]
    if normalise:
        normalise_sessions(block, out_days)
    return FeatureBlock(np.asarray(names, dtype=object), codes[sel_idx], out_days, block)


def normalise_sessions(block: np.ndarray, days: np.ndarray) -> None:
    """Fill the cross-sectional columns of ``block`` (rows dated ``days``) in place.

    Each session is scaled on its own rows, so any set of whole sessions can be normalised
    apart (the feature stage does it a few sessions at a time, while earlier ones are written).
    Rows keep their relative order within a session, so sums run in the same order either way.
    """
    position = {spec.name: j for j, spec in enumerate(FEATURES)}
    cross = [spec for spec in FEATURES if spec.function in _CS]
    if not cross:
        return
    if not days.size:
        block[:, [position[spec.name] for spec in cross]] = np.nan
        return
    groups = nrm.sessions_of(days)
    by_base: dict[str, list[FeatureSpec]] = {}
    for spec in cross:
        by_base.setdefault(spec.of, []).append(spec)
    for name, members in by_base.items():
        results = nrm.cross_sectional(block[:, position[name]], groups, [m.function for m in members])
        for spec, res in zip(members, results):
            block[:, position[spec.name]] = res
