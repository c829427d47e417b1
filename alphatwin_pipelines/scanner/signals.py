"""Per-symbol signal detection with TA-Lib on NumPy arrays.

Everything here looks at one symbol's own bars (split/dividend-adjusted ``adj_*`` columns),
so a shard of symbols can be scanned anywhere. Every indicator is causal: the value at
session t uses bars up to and including t only.

Scores share one convention so families can be ranked together: a signal scores **2.0 at
its firing threshold plus its standardised excess beyond it** (σ units for z-scores and
Bollinger, ATR units for price gaps, log2 units for volume ratios, RSI/ADX points / 10).
Scores are ratios of prices or volumes, so they do not change when later corporate actions
rescale the adjusted history; evidence values are in adjusted units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import talib
from numpy.lib.stride_tricks import sliding_window_view

FAMILIES: tuple[str, ...] = ("trend", "mean_reversion", "momentum", "breakout")

#: signal name -> (family, direction); direction 0 means "decided per row".
SIGNALS: dict[str, tuple[str, int]] = {
    "sma_50_200_golden_cross": ("trend", 1),
    "sma_50_200_death_cross": ("trend", -1),
    "ema_12_26_bullish_cross": ("trend", 1),
    "ema_12_26_bearish_cross": ("trend", -1),
    "adx_14_trend_up": ("trend", 1),
    "adx_14_trend_down": ("trend", -1),
    "rsi_14_oversold": ("mean_reversion", 1),
    "rsi_14_overbought": ("mean_reversion", -1),
    "bb_20_2_below_lower": ("mean_reversion", 1),
    "bb_20_2_above_upper": ("mean_reversion", -1),
    "zscore_20_low": ("mean_reversion", 1),
    "zscore_20_high": ("mean_reversion", -1),
    "momentum_12_1_up": ("momentum", 1),
    "momentum_12_1_down": ("momentum", -1),
    "volume_momentum_20_120": ("momentum", 0),
    "donchian_20_breakout_up": ("breakout", 1),
    "donchian_20_breakout_down": ("breakout", -1),
    "volume_spike_20": ("breakout", 0),
}
SIGNAL_NAMES: tuple[str, ...] = tuple(SIGNALS)
SIGNAL_FAMILY: tuple[str, ...] = tuple(f for f, _ in SIGNALS.values())

#: Sessions of history a symbol needs before every signal can fire (momentum 12-1 needs 253).
MAX_LOOKBACK = 253


@dataclass(frozen=True)
class ScanConfig:
    """Thresholds of the scan. Window lengths are fixed: they are part of the signal names."""

    cross_lookback: int = 5  # a crossover "fires" on the cross session and the next N-1
    adx_threshold: float = 25.0
    rsi_oversold: float = 30.0
    rsi_overbought: float = 70.0
    zscore_threshold: float = 2.0
    momentum_min_t: float = 1.5  # |12-1 log return| / (daily σ · √231)
    volume_momentum_ratio: float = 1.5  # 20d / 120d average volume
    volume_spike_k: float = 3.0  # volume / prior 20d median volume
    top_k_pairs: int = 25
    session_chunk: int = 32  # sessions per cross-asset task


class Evidence(NamedTuple):
    """The numbers behind one signal's rows; ``format_evidence`` turns them into JSON later.

    Formatting per symbol cost more than computing the indicators, so a shard formats each
    signal's rows of all its symbols in one vectorised batch.
    """

    keys: tuple[str, ...]
    integer: tuple[bool, ...]  # per key: written as an integer (counts such as sessions_since_cross)
    values: np.ndarray  # float64, keys × rows, so blocks concatenate into one contiguous row per key


@dataclass
class SymbolHits:
    """The signals one symbol fired on the selected rows (parallel arrays)."""

    rows: np.ndarray  # row positions within the symbol's bars
    signal_ids: np.ndarray  # index into SIGNAL_NAMES
    directions: np.ndarray
    scores: np.ndarray
    evidence: dict[int, Evidence]  # signal id -> its rows' evidence; each signal is one block of rows


def _number_text(values: np.ndarray, integer: bool) -> pa.Array:
    if integer:
        return pa.array(values.astype(np.int64)).cast(pa.large_string())
    with np.errstate(over="ignore", invalid="ignore"):
        # NumPy's rounding, not pc.round: these are the values evidence always held, and
        # pc.round raises where x * 1e4 overflows instead of giving inf (-> null)
        rounded = np.round(values, 4)
    finite = np.isfinite(rounded)
    text = pa.array(rounded, mask=~finite).cast(pa.large_string())
    whole = finite & (rounded == np.trunc(rounded))
    if whole.any():  # Arrow writes 101.0 as "101" and -0.0 as "-0", which JSON reads as integers
        suffix = pc.and_(pa.array(whole), pc.invert(pc.match_substring(text, "e")))
        text = pc.if_else(suffix, pc.binary_join_element_wise(text, pa.scalar(".0", pa.large_string()),
                                                              pa.scalar("", pa.large_string())), text)
    return text.fill_null("null")


def format_evidence(keys: tuple[str, ...], integer: tuple[bool, ...], values: np.ndarray) -> pa.LargeStringArray:
    """Compact JSON objects, one per column of ``values``: ``{"rsi_14":24.1234,"close":101.2}``.

    Floats are rounded to 4 decimals (non-finite -> null), ``integer`` keys written as integers.
    Arrow writes the shortest text that parses back to the same double, so JSON readers get
    exactly the rounded values; whole floats keep a ".0" so that they still read as floats.
    """
    pieces: list = []
    for i, (key, is_int) in enumerate(zip(keys, integer)):
        pieces += [("{" if i == 0 else ",") + f'"{key}":', _number_text(values[i], is_int)]
    pieces += ["}", ""]  # the last one is the separator
    # large_string throughout: a shard's evidence can pass 2 GB; a plain str literal would be typed string
    return pc.binary_join_element_wise(*(pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in pieces))


def format_shard_evidence(evidence: list[dict[int, Evidence]], signal_ids: np.ndarray) -> pa.LargeStringArray:
    """The evidence of many symbols' hits, formatted in one batch per signal (18 Arrow calls per shard).

    ``evidence`` holds each symbol's ``SymbolHits.evidence`` and ``signal_ids`` the ids of their
    rows concatenated in the same order. A symbol emits each signal as one block, so a signal's
    blocks joined in symbol order are its rows in frame order: a stable sort by signal id, whose
    inverse puts the batches back in frame order.
    """
    blocks: dict[int, list[Evidence]] = {}
    for symbol in evidence:
        for sid, block in symbol.items():
            blocks.setdefault(sid, []).append(block)
    batches = [format_evidence(b[0].keys, b[0].integer, np.concatenate([x.values for x in b], axis=1))
               for _, b in sorted(blocks.items())]
    grouped = pa.concat_arrays(batches) if batches else pa.array([], type=pa.large_string())
    order = np.argsort(signal_ids, kind="stable")
    if len(grouped) != order.size:
        raise ValueError(f"{len(grouped)} evidence rows for {order.size} signal ids")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return grouped.take(pa.array(inverse))


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if k < len(a):
        out[k:] = a[: len(a) - k]
    return out


def _fresh_cross(fast: np.ndarray, slow: np.ndarray, lookback: int):
    """Rows within ``lookback`` sessions of the latest bullish / bearish cross of fast over slow.

    A cross at t needs the gap defined at t-1 and t: the first defined session is never a
    cross, since when the lines crossed before it is unknown. Returns (bull, bear, age).
    """
    diff = fast - slow
    n = len(diff)
    idx = np.arange(n)
    above, below = diff > 0, diff < 0
    prev_ok = np.zeros(n, dtype=bool)
    prev_ok[1:] = np.isfinite(diff[:-1])
    prev_above = np.r_[False, above[:-1]]
    prev_below = np.r_[False, below[:-1]]
    last_up = np.maximum.accumulate(np.where(above & ~prev_above & prev_ok, idx, -1))
    last_down = np.maximum.accumulate(np.where(below & ~prev_below & prev_ok, idx, -1))
    bull = above & (last_up >= 0) & (idx - last_up < lookback)
    bear = below & (last_down >= 0) & (idx - last_down < lookback)
    age = np.where(above, idx - last_up, idx - last_down)
    return bull, bear, age


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def symbol_signals(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    selected: np.ndarray,
    config: ScanConfig = ScanConfig(),
) -> SymbolHits:
    """All signals one symbol fires on the rows where ``selected`` is True.

    Inputs are the symbol's bars in date order (float64, adjusted). Indicators are computed
    over the whole history given, so the history before the first selected row is the lookback.
    """
    h, lo, c, v = (np.ascontiguousarray(a, dtype=np.float64) for a in (high, low, close, volume))
    n = len(c)
    hits: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    evidence: dict[int, Evidence] = {}
    ids = {name: i for i, name in enumerate(SIGNAL_NAMES)}

    def emit(name, cond, score, direction, keys, cols):
        rows = np.flatnonzero(cond & selected)
        if rows.size == 0:
            return
        d = np.full(rows.size, direction, dtype=np.int8) if np.isscalar(direction) else direction[rows]
        hits.append((ids[name], rows, d.astype(np.int8), score[rows]))
        evidence[ids[name]] = Evidence(tuple(keys), tuple(col.dtype.kind in "iu" for col in cols),
                                       np.array([col[rows] for col in cols], dtype=np.float64))

    with np.errstate(divide="ignore", invalid="ignore"):
        atr = talib.ATR(h, lo, c, 14)
        # --- trend: fresh SMA 50/200 and EMA 12/26 crosses, ADX trend strength
        for fast_name, slow_name, fast, slow, stem, up, down in (
            ("sma_50", "sma_200", talib.SMA(c, 50), talib.SMA(c, 200), "sma_50_200", "golden", "death"),
            ("ema_12", "ema_26", talib.EMA(c, 12), talib.EMA(c, 26), "ema_12_26", "bullish", "bearish"),
        ):
            bull, bear, age = _fresh_cross(fast, slow, config.cross_lookback)
            score = 2.0 + _ratio(np.abs(fast - slow), atr)
            keys = ["close", fast_name, slow_name, "atr_14", "sessions_since_cross"]
            cols = [c, fast, slow, atr, age]
            emit(f"{stem}_{up}_cross", bull & np.isfinite(score), score, 1, keys, cols)
            emit(f"{stem}_{down}_cross", bear & np.isfinite(score), score, -1, keys, cols)
        adx = talib.ADX(h, lo, c, 14)
        pdi, mdi = talib.PLUS_DI(h, lo, c, 14), talib.MINUS_DI(h, lo, c, 14)
        strong = adx > config.adx_threshold
        score = 2.0 + (adx - config.adx_threshold) / 10.0
        cols = [adx, pdi, mdi]
        emit("adx_14_trend_up", strong & (pdi > mdi), score, 1, ["adx_14", "plus_di_14", "minus_di_14"], cols)
        emit("adx_14_trend_down", strong & (pdi < mdi), score, -1, ["adx_14", "plus_di_14", "minus_di_14"], cols)

        # --- mean reversion: RSI extremes, Bollinger excursions, 20d z-score
        rsi = talib.RSI(c, 14)
        emit("rsi_14_oversold", rsi < config.rsi_oversold, 2.0 + (config.rsi_oversold - rsi) / 10.0,
             1, ["rsi_14", "close"], [rsi, c])
        emit("rsi_14_overbought", rsi > config.rsi_overbought, 2.0 + (rsi - config.rsi_overbought) / 10.0,
             -1, ["rsi_14", "close"], [rsi, c])
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        sigma = (upper - middle) / 2.0  # population σ of the last 20 closes
        bb_score = _ratio(np.abs(c - middle), sigma)
        pctb = _ratio(c - lower, upper - lower)
        keys = ["close", "bb_upper", "bb_middle", "bb_lower", "bb_pctb"]
        cols = [c, upper, middle, lower, pctb]
        emit("bb_20_2_below_lower", c < lower, bb_score, 1, keys, cols)
        emit("bb_20_2_above_upper", c > upper, bb_score, -1, keys, cols)
        std = sigma * np.sqrt(20.0 / 19.0)  # sample σ (ddof=1)
        z = _ratio(c - middle, std)
        keys, cols = ["close", "mean_20", "std_20", "zscore_20"], [c, middle, std, z]
        emit("zscore_20_low", z < -config.zscore_threshold, np.abs(z), 1, keys, cols)
        emit("zscore_20_high", z > config.zscore_threshold, np.abs(z), -1, keys, cols)

        # --- momentum: 12-1 month price momentum, 20d/120d volume momentum
        c21, c252 = _shift(c, 21), _shift(c, 252)
        logret = np.full(n, np.nan)
        logret[1:] = np.log(c[1:] / c[:-1])
        vol252 = talib.STDDEV(logret, 252, 1.0) if n > 252 else np.full(n, np.nan)
        mom = c21 / c252 - 1.0
        mom_t = _ratio(np.log(c21 / c252), vol252 * np.sqrt(231.0))
        score = 2.0 + np.abs(mom_t) - config.momentum_min_t
        keys = ["momentum_12_1", "momentum_t", "close_t21", "close_t252", "vol_252"]
        cols = [mom, mom_t, c21, c252, vol252]
        emit("momentum_12_1_up", mom_t >= config.momentum_min_t, score, 1, keys, cols)
        emit("momentum_12_1_down", mom_t <= -config.momentum_min_t, score, -1, keys, cols)
        vavg20, vavg120 = talib.SMA(v, 20), talib.SMA(v, 120)
        vratio = _ratio(vavg20, vavg120)
        ret20 = c / _shift(c, 20) - 1.0
        emit("volume_momentum_20_120", (vratio >= config.volume_momentum_ratio) & np.isfinite(ret20),
             2.0 + np.log2(vratio / config.volume_momentum_ratio), np.where(ret20 >= 0, 1, -1),
             ["volume_avg_20", "volume_avg_120", "volume_ratio", "return_20"], [vavg20, vavg120, vratio, ret20])

        # --- breakouts: Donchian 20 channel (prior 20 sessions), volume spikes
        prior_high, prior_low = _shift(talib.MAX(h, 20), 1), _shift(talib.MIN(lo, 20), 1)
        up_ok, down_ok = (c > prior_high) & (atr > 0), (c < prior_low) & (atr > 0)
        emit("donchian_20_breakout_up", up_ok, 2.0 + _ratio(c - prior_high, atr), 1,
             ["close", "donchian_high_20", "atr_14"], [c, prior_high, atr])
        emit("donchian_20_breakout_down", down_ok, 2.0 + _ratio(prior_low - c, atr), -1,
             ["close", "donchian_low_20", "atr_14"], [c, prior_low, atr])
        # median of the prior 20 volumes, only where a spike is possible (v > k × prior minimum)
        median20 = np.full(n, np.nan)
        maybe = np.flatnonzero(selected & (v > config.volume_spike_k * _shift(talib.MIN(v, 20), 1)))
        if maybe.size:
            median20[maybe] = np.median(sliding_window_view(v, 20)[maybe - 20], axis=1)
        spike = _ratio(v, median20)
        ret1 = c / _shift(c, 1) - 1.0
        emit("volume_spike_20", (spike > config.volume_spike_k) & np.isfinite(ret1),
             2.0 + np.log2(spike / config.volume_spike_k), np.where(ret1 >= 0, 1, -1),
             ["volume", "volume_median_20", "volume_ratio", "return_1d"], [v, median20, spike, ret1])

    if not hits:
        empty = np.empty(0)
        return SymbolHits(empty.astype(np.int64), empty.astype(np.int16), empty.astype(np.int8), empty, {})
    return SymbolHits(
        rows=np.concatenate([h_[1] for h_ in hits]),
        signal_ids=np.concatenate([np.full(h_[1].size, h_[0], dtype=np.int16) for h_ in hits]),
        directions=np.concatenate([h_[2] for h_ in hits]),
        scores=np.concatenate([h_[3] for h_ in hits]).astype(np.float64),
        evidence=evidence,
    )
