"""Qlib's 14-feature data-server task, vectorised over a whole (symbol, date)-sorted panel.

The Qlib README's "Performance of Qlib Data Server" table times one task: build a data set of
14 features from daily OHLCV. These are those features, in Qlib's expression notation
(``QLIB14``), computed here without a per-symbol Python loop:

* the panel is processed in cache-sized runs of rows (each with the 19 rows before it, so
  every window is complete), so all temporaries stay in cache and only the outputs are
  panel-sized;
* element-wise terms are single NumPy expressions; ``Mean``, ``Max`` and ``Min`` are
  ``talib.SMA/MAX/MIN`` over the run; windows that would reach into the previous symbol are
  masked by each row's position within its symbol, so no value ever mixes symbols (an SMA's
  running sum may carry rounding residue of ~1e-16 of earlier prices, nothing more);
* second moments (``Std``, ``Corr``, ``Rsquare``) are *two-pass* per window: deviations from
  the window's own mean, summed over ``w`` shifted slices. Nothing is accumulated across
  windows, so there is neither cancellation (``E[x^2] - E[x]^2``) nor drift;
* ``Slope`` is the fixed-weight sum ``sum_j (t_j - mean t) x_j / sum_j (t_j - mean t)^2``,
  computed the same way.

Conventions: ``Std`` uses ddof=1 (Qlib's is pandas' ``rolling().std()``); ``Corr`` and
``Rsquare`` are NaN where a rolling std (ddof=1) is within 2e-5 of zero, as Qlib's ops do.
Every window is complete: the first ``w - 1`` rows of each symbol are NaN. Qlib's own
operators use ``min_periods=1`` and emit partial-window values there instead; only those
warm-up rows differ.

``qlib14_pandas`` is the per-symbol reference (groupby, then pandas rolling per feature) used
by the benchmark and the tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

#: (column, Qlib expression), in Qlib's notation.
QLIB14: tuple[tuple[str, str], ...] = (
    ("RET1", "$close/Ref($close,1)-1"),
    ("MA5", "Mean($close,5)/$close"),
    ("MA10", "Mean($close,10)/$close"),
    ("MA20", "Mean($close,20)/$close"),
    ("STD20", "Std($close,20)/$close"),
    ("KLEN", "($high-$low)/$open"),
    ("KMID", "($close-$open)/$open"),
    ("VMA5", "Mean($volume,5)/($volume+1e-12)"),
    ("CORR10", "Corr($close,Log($volume+1),10)"),
    ("MAX20", "Max($high,20)/$close"),
    ("MIN20", "Min($low,20)/$close"),
    ("RSQR10", "Rsquare($close,10)"),
    ("BETA10", "Slope($close,10)/$close"),
    ("RSV14", "($close-Min($low,14))/(Max($high,14)-Min($low,14)+1e-12)"),
)
QLIB14_COLUMNS: tuple[str, ...] = tuple(name for name, _ in QLIB14)
_FLAT_STD = 2e-5  # Qlib: np.isclose(rolling std, 0, atol=2e-5) -> NaN
_CHUNK = 1 << 14  # rows per run: every temporary stays in cache
_HALO = 19  # longest window - 1


def _symbol_codes(symbol: pd.Series) -> np.ndarray:
    if isinstance(symbol.dtype, pd.CategoricalDtype):  # e.g. Parquet read with read_dictionary
        return symbol.cat.codes.to_numpy().astype(np.int64)
    return pd.factorize(symbol)[0]


def _sorted_panel(frame: pd.DataFrame, prefix: str) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
    """Rows grouped by symbol in date order, float64 OHLCV arrays and each symbol's first row.
    A panel already grouped and date-sorted (like the Parquet file) is not re-sorted."""
    codes = _symbol_codes(frame["symbol"])
    stamps = np.asarray(pd.to_datetime(frame["date"]).to_numpy()).view(np.int64)
    new = np.r_[True, codes[1:] != codes[:-1]] if codes.size else np.empty(0, dtype=bool)
    same = ~new[1:]
    grouped = np.all(stamps[1:][same] > stamps[:-1][same]) and new.sum() == np.unique(codes).size
    order = None
    if not grouped:
        codes = pd.factorize(frame["symbol"].to_numpy(dtype=object), sort=True)[0]
        order = np.lexsort((stamps, codes))
        codes = codes[order]
        new = np.r_[True, codes[1:] != codes[:-1]]

    def take(values: np.ndarray) -> np.ndarray:
        return values if order is None else values[order]

    cols = {c: np.ascontiguousarray(take(frame[prefix + c].to_numpy(dtype=np.float64)))
            for c in ("open", "high", "low", "close", "volume")}
    keys = frame[["symbol", "date"]] if order is None else frame[["symbol", "date"]].iloc[order]
    return keys.reset_index(drop=True), cols, np.flatnonzero(new)


def _masked(values: np.ndarray, rank: np.ndarray, w: int) -> np.ndarray:
    values[rank < w - 1] = np.nan
    return values


def _centred_moments(x: np.ndarray, y: np.ndarray | None, w: int):
    """Per window of ``w`` rows ending at i: sum (x - mean x)^2 and sum (t - mean t) x for
    t = 1..w; with ``y`` also sum (y - mean y)^2 and sum (x - mean x)(y - mean y). Two-pass:
    deviations from each window's own mean, summed over ``w`` shifted slices."""
    n = x.size
    sxx, stx = np.full(n, np.nan), np.full(n, np.nan)
    syy, sxy = (np.full(n, np.nan), np.full(n, np.nan)) if y is not None else (None, None)
    m = n - w + 1
    if m <= 0:
        return sxx, syy, sxy, stx
    end = slice(w - 1, n)
    cx = talib.SMA(x, timeperiod=w)[end]
    acc_xx, acc_tx, dx, tmp = np.zeros(m), np.zeros(m), np.empty(m), np.empty(m)
    if y is not None:
        cy = talib.SMA(y, timeperiod=w)[end]
        acc_yy, acc_xy, dy = np.zeros(m), np.zeros(m), np.empty(m)
    for j in range(w):  # the element j rows before each window's end; t - mean(t) = (w-1)/2 - j
        xs = x[w - 1 - j : n - j]
        np.multiply(xs, (w - 1) / 2.0 - j, out=tmp)
        acc_tx += tmp
        np.subtract(xs, cx, out=dx)
        if y is not None:
            np.subtract(y[w - 1 - j : n - j], cy, out=dy)
            np.multiply(dx, dy, out=tmp)
            acc_xy += tmp
            dy *= dy
            acc_yy += dy
        dx *= dx
        acc_xx += dx
    sxx[end], stx[end] = acc_xx, acc_tx
    if y is not None:
        syy[end], sxy[end] = acc_yy, acc_xy
    return sxx, syy, sxy, stx


def _chunk(o, h, l, c, v, rank) -> dict[str, np.ndarray]:
    """All 14 features for a run of rows (windows masked by each row's position in its symbol)."""
    out: dict[str, np.ndarray] = {}
    ret = np.full_like(c, np.nan)
    ret[1:] = c[1:] / c[:-1] - 1.0
    out["RET1"] = _masked(ret, rank, 2)
    for w in (5, 10, 20):
        out[f"MA{w}"] = _masked(talib.SMA(c, timeperiod=w) / c, rank, w)
    sxx20, _, _, _ = _centred_moments(c, None, 20)
    out["STD20"] = _masked(np.sqrt(sxx20 / 19.0) / c, rank, 20)
    out["KLEN"] = (h - l) / o
    out["KMID"] = (c - o) / o
    out["VMA5"] = _masked(talib.SMA(v, timeperiod=5) / (v + 1e-12), rank, 5)
    sxx, syy, sxy, stx = _centred_moments(c, np.log(v + 1.0), 10)
    flat = np.sqrt(sxx / 9.0) <= _FLAT_STD
    flat_v = np.sqrt(syy / 9.0) <= _FLAT_STD
    out["CORR10"] = _masked(np.where(flat | flat_v, np.nan, sxy / np.sqrt(sxx * syy)), rank, 10)
    out["MAX20"] = _masked(talib.MAX(h, timeperiod=20) / c, rank, 20)
    out["MIN20"] = _masked(talib.MIN(l, timeperiod=20) / c, rank, 20)
    stt = 10 * (10 * 10 - 1) / 12.0  # sum (t - mean t)^2 for t = 1..10
    out["RSQR10"] = _masked(np.where(flat, np.nan, stx * stx / (stt * sxx)), rank, 10)
    out["BETA10"] = _masked(stx / stt / c, rank, 10)
    lo14, hi14 = talib.MIN(l, timeperiod=14), talib.MAX(h, timeperiod=14)
    out["RSV14"] = _masked((c - lo14) / (hi14 - lo14 + 1e-12), rank, 14)
    return out


def qlib14(frame: pd.DataFrame, adjusted: bool = False) -> pd.DataFrame:
    """The 14 features for every row: ``symbol``, ``date`` then ``QLIB14_COLUMNS``, rows grouped
    by symbol in date order. Uses ``adj_*`` prices/volume when ``adjusted`` else the raw columns.

    The panel is processed in cache-sized runs of rows, each with the ``_HALO`` rows before it
    so that every window is complete; only the outputs are panel-sized.
    """
    keys, cols, starts = _sorted_panel(frame, "adj_" if adjusted else "")
    o, h, l, c, v = (cols[k] for k in ("open", "high", "low", "close", "volume"))
    n = c.size
    block = np.empty((n, len(QLIB14_COLUMNS)), order="F")
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(0, n, _CHUNK):
            b, lo = min(a + _CHUNK, n), max(a - _HALO, 0)
            rows = np.arange(lo, b)
            rank = rows - starts[np.searchsorted(starts, rows, side="right") - 1]
            res = _chunk(o[lo:b], h[lo:b], l[lo:b], c[lo:b], v[lo:b], rank)
            for j, name in enumerate(QLIB14_COLUMNS):
                block[a:b, j] = res[name][a - lo :]
    features = pd.DataFrame(block, columns=list(QLIB14_COLUMNS), copy=False)  # wraps the block
    features.insert(0, "date", keys["date"].to_numpy())
    features.insert(0, "symbol", keys["symbol"].array)
    return features


def qlib14_pandas(frame: pd.DataFrame, adjusted: bool = False) -> pd.DataFrame:
    """Reference implementation: per symbol, pandas rolling windows for each feature."""
    prefix = "adj_" if adjusted else ""
    data = frame.loc[:, ["symbol", "date", *(prefix + k for k in ("open", "high", "low", "close", "volume"))]]
    data.columns = ["symbol", "date", "open", "high", "low", "close", "volume"]
    data = data.assign(date=pd.to_datetime(data["date"]).astype("datetime64[ns]"),
                       volume=data["volume"].astype("float64"))
    data = data.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    parts = []
    for _, g in data.groupby("symbol", sort=False):
        c, o, h, l, v = g["close"], g["open"], g["high"], g["low"], g["volume"]
        t = pd.Series(np.arange(len(g), dtype=np.float64), index=g.index)
        logv = np.log(v + 1.0)
        std10, stdv10 = c.rolling(10).std(), logv.rolling(10).std()
        corr = c.rolling(10).corr(logv).where(~((std10.abs() <= _FLAT_STD) | (stdv10.abs() <= _FLAT_STD)))
        rsq = (c.rolling(10).corr(t) ** 2).where(~(std10.abs() <= _FLAT_STD))
        lo14, hi14 = l.rolling(14).min(), h.rolling(14).max()
        parts.append(pd.DataFrame({
            "RET1": c / c.shift(1) - 1,
            "MA5": c.rolling(5).mean() / c,
            "MA10": c.rolling(10).mean() / c,
            "MA20": c.rolling(20).mean() / c,
            "STD20": c.rolling(20).std() / c,
            "KLEN": (h - l) / o,
            "KMID": (c - o) / o,
            "VMA5": v.rolling(5).mean() / (v + 1e-12),
            "CORR10": corr,
            "MAX20": h.rolling(20).max() / c,
            "MIN20": l.rolling(20).min() / c,
            "RSQR10": rsq,
            "BETA10": c.rolling(10).cov(t) / t.rolling(10).var() / c,
            "RSV14": (c - lo14) / (hi14 - lo14 + 1e-12),
        }))
    out = pd.concat(parts) if parts else pd.DataFrame(columns=list(QLIB14_COLUMNS), dtype=np.float64)
    return pd.concat([data[["symbol", "date"]], out.reindex(data.index)], axis=1)
