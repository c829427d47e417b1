"""Cross-asset context from the gathered ``ReturnsPanel`` (sessions × symbols, NaN = no return).

* ``symbol_context``: each symbol's 60-session correlation with its sector (equal-weight
  sector return *excluding the symbol*) and with the market (equal-weight universe), its
  market beta, 63-session return and relative strength against the market;
* ``sector_rotation``: sector-aggregate (equal-weight) 21/63-session returns minus the
  market's, ranked by 63-session relative strength, with the rank change over 21 sessions;
* ``top_pairs``: the K most correlated symbol pairs over the last 60 returns.

Every figure at session t uses returns up to t only, and is computed per session on fixed
windows (never a running sum), so it does not depend on which other sessions are scanned or
on how sessions are chunked across workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.scanner.pairs import Scratch, top_pairs

CORR_WINDOW = 60
RS_WINDOW = 63
ROTATION_LAG = 21
#: Returns needed before the first scanned session (63-session strength, 21 sessions earlier).
CONTEXT_LOOKBACK = RS_WINDOW + ROTATION_LAG

CONTEXT_COLUMNS = ["symbol", "date", "sector", "corr_sector_60", "corr_market_60", "beta_market_60",
                   "return_63", "rel_strength_63"]
ROTATION_COLUMNS = ["date", "sector", "n_symbols", "return_21", "return_63", "rel_strength_21",
                    "rel_strength_63", "rank", "rank_change_21"]
PAIR_COLUMNS = ["date", "pair_rank", "symbol_a", "symbol_b", "sector_a", "sector_b", "same_sector", "corr_60"]


class ReturnsPanel(NamedTuple):
    """Simple daily returns, sessions × symbols (NaN = no return), as plain arrays.

    Not a DataFrame: Dask measures every result it stores or sends with ``sizeof``, which walks
    a frame column by column, a noticeable share of the workers' time for a wide panel."""

    dates: np.ndarray  # sorted datetime64[ns]
    symbols: np.ndarray  # object
    values: np.ndarray  # float64, C order, dates × symbols


def merge_returns(panels: Sequence[ReturnsPanel]) -> ReturnsPanel:
    """Shard panels (disjoint symbols) to one panel: union of dates, symbols sorted."""
    panels = [p for p in panels if p.symbols.size]
    if not panels:
        return ReturnsPanel(np.empty(0, dtype="datetime64[ns]"), np.empty(0, dtype=object), np.empty((0, 0)))
    dates = np.unique(np.concatenate([p.dates for p in panels]))
    symbols = np.concatenate([p.symbols for p in panels])
    order = np.argsort(symbols, kind="stable")
    column = np.empty_like(order)
    column[order] = np.arange(order.size)
    values = np.full((dates.size, symbols.size), np.nan)
    first = 0
    for p in panels:
        values[np.ix_(np.searchsorted(dates, p.dates), column[first : first + p.symbols.size])] = p.values
        first += p.symbols.size
    return ReturnsPanel(dates, symbols[order], values)


def _group_means(values: np.ndarray, codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row sums and counts of finite values by column group: (rows × groups) each."""
    sums = np.zeros((values.shape[0], n_groups))
    counts = np.zeros((values.shape[0], n_groups))
    finite = np.isfinite(values)
    for g in range(n_groups):
        cols = codes == g
        sums[:, g] = np.where(finite[:, cols], values[:, cols], 0.0).sum(axis=1)
        counts[:, g] = finite[:, cols].sum(axis=1)
    return sums, counts


def _market(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, values, 0.0).sum(axis=1) / count, np.nan)


def _positions(dates: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    """Row positions of the sessions present in the (sorted) panel dates."""
    if dates.size == 0:
        return np.empty(0, dtype=np.int64)
    pos = np.searchsorted(dates, sessions)
    inside = pos < dates.size
    pos = pos[inside]
    return pos[dates[pos] == sessions[inside]]


def arrow_strings(codes: np.ndarray, names) -> pd.arrays.ArrowStringArray:
    """``names[codes]`` as a pandas string array, decoded in Arrow (no Python objects)."""
    dictionary = pa.array(np.asarray(names, dtype=object), type=pa.large_string())
    indices = pa.array(np.asarray(codes, dtype=np.int32))
    return pd.array(pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode(), dtype="string")


def _context_frame(cols, dates, sector_codes, sector_names, symbols, values) -> pd.DataFrame:
    frame = pd.DataFrame({
        "symbol": arrow_strings(cols, symbols),
        "date": np.asarray(dates, dtype="datetime64[ns]"),
        "sector": arrow_strings(sector_codes[cols], sector_names),
    })
    for name, column in zip(CONTEXT_COLUMNS[3:], values):
        frame[name] = np.asarray(column, dtype=np.float64)
    return frame


def _pairs_frame(i, j, dates, ranks, corr, sector_codes, sector_names, symbols) -> pd.DataFrame:
    return pd.DataFrame({
        "date": np.asarray(dates, dtype="datetime64[ns]"),
        "pair_rank": np.asarray(ranks, dtype=np.int64),
        "symbol_a": arrow_strings(i, symbols),
        "symbol_b": arrow_strings(j, symbols),
        "sector_a": arrow_strings(sector_codes[i], sector_names),
        "sector_b": arrow_strings(sector_codes[j], sector_names),
        "same_sector": sector_codes[i] == sector_codes[j],
        "corr_60": np.asarray(corr, dtype=np.float64),
    })


def _empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    none = np.empty(0, dtype=np.int64)
    return (_context_frame(none, none, none, [], [], [none] * (len(CONTEXT_COLUMNS) - 3)),
            _pairs_frame(none, none, none, none, none, none, [], []))


def session_context(
    returns: ReturnsPanel, sectors: pd.Series, sessions: np.ndarray, top_k: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``symbol_context`` and ``top_pairs`` rows for ``sessions`` (a pure, mappable chunk).

    ``sectors`` maps symbol -> sector. Symbols appear on a session when they have a return there.
    """
    symbols, dates = returns.symbols, returns.dates
    sector_names = sectors.reindex(symbols).fillna("Unknown").to_numpy(dtype=object)
    positions = _positions(dates, np.asarray(sessions, dtype="datetime64[ns]"))
    if positions.size == 0 or symbols.size == 0:
        return _empty_frames()
    lo = max(0, positions.min() - RS_WINDOW + 1)
    values = returns.values[lo : positions.max() + 1]  # whole rows of a C-order array: no copy
    codes, uniques = pd.factorize(pd.Series(sector_names), sort=True)
    sums, counts = _group_means(values, codes, len(uniques))
    with np.errstate(invalid="ignore", divide="ignore"):
        ex_self = np.where(
            np.isfinite(values) & (counts[:, codes] > 1),
            (sums[:, codes] - values) / (counts[:, codes] - 1),
            np.nan,
        )
    market = _market(values)
    n_sym = symbols.size
    none, no_day = np.empty(0, dtype=np.int64), np.empty(0, dtype="datetime64[ns]")
    ctx = {c: [no_day if c == "date" else none] for c in CONTEXT_COLUMNS if c != "sector"}  # symbol: column
    pairs = {k: [no_day if k == "date" else none] for k in ("i", "j", "date", "rank", "corr")}
    nan_row = np.full(n_sym, np.nan)
    scratch = Scratch()
    shape = (CORR_WINDOW, n_sym)
    for pos in (positions - lo).tolist():
        date = dates[pos + lo]
        now = np.isfinite(values[pos])
        corr_s = corr_m = beta = ret63 = rel63 = nan_row
        if pos + 1 >= CORR_WINDOW:
            rows = slice(pos + 1 - CORR_WINDOW, pos + 1)
            x, y, m = values[rows], ex_self[rows], market[rows]  # contiguous row blocks, no copies
            xc = np.subtract(x, x.mean(axis=0), out=scratch.get("xc", shape))
            yc = np.subtract(y, y.mean(axis=0), out=scratch.get("yc", shape))
            mc = m - m.mean()
            tmp = scratch.get("tmp", shape)
            sxx = np.multiply(xc, xc, out=tmp).sum(axis=0)
            syy = np.multiply(yc, yc, out=tmp).sum(axis=0)
            sxy = np.multiply(xc, yc, out=tmp).sum(axis=0)
            sxm = np.multiply(xc, mc[:, None], out=tmp).sum(axis=0)
            smm = float(mc @ mc)
            with np.errstate(invalid="ignore", divide="ignore"):
                corr_s = sxy / np.sqrt(sxx * syy)
                corr_m, beta = sxm / np.sqrt(sxx * smm), sxm / smm
            i, j, corr = top_pairs(xc, sxx, top_k, scratch)
            for key, arr in zip(pairs, (i, j, np.full(corr.size, date), np.arange(1, corr.size + 1), corr)):
                pairs[key].append(arr)
        if pos + 1 >= RS_WINDOW:
            growth, market_growth = np.ones(n_sym), 1.0
            for row in range(pos + 1 - RS_WINDOW, pos + 1):
                growth = growth * (1.0 + values[row])
                market_growth = market_growth * (1.0 + market[row])
            ret63, rel63 = growth - 1.0, growth - market_growth
        idx = np.flatnonzero(now)
        for col, arr in zip(ctx, (idx, np.full(idx.size, date), corr_s[idx], corr_m[idx], beta[idx],
                                  ret63[idx], rel63[idx])):
            ctx[col].append(arr)
    # rows come out ordered by (date, symbol) and (date, pair_rank): sessions and columns are sorted
    flat = {c: np.concatenate(v) for c, v in ctx.items()}
    context = _context_frame(flat["symbol"], flat["date"], codes, uniques, symbols,
                             [flat[c] for c in CONTEXT_COLUMNS[3:]])
    return context, _pairs_frame(*(np.concatenate(pairs[k]) for k in pairs), codes, uniques, symbols)


def sector_rotation(returns: ReturnsPanel, sectors: pd.Series, sessions: np.ndarray) -> pd.DataFrame:
    """Sector-aggregate relative strength per session, ranked (1 = strongest over 63 sessions).

    Sector and market returns are equal-weight means of their members' daily returns,
    compounded over each window; ties in rank go to the sector name that sorts first.
    """
    symbols, dates = returns.symbols, returns.dates
    pos = _positions(dates, np.asarray(sessions, dtype="datetime64[ns]"))
    if pos.size == 0 or symbols.size == 0:
        return pd.DataFrame({c: [] for c in ROTATION_COLUMNS})
    values = returns.values
    codes, uniques = pd.factorize(sectors.reindex(symbols).fillna("Unknown").astype(object), sort=True)
    sums, counts = _group_means(values, codes, len(uniques))
    with np.errstate(invalid="ignore", divide="ignore"):
        daily = np.column_stack([np.where(counts > 0, sums / counts, np.nan), _market(values)])  # market last

    def window_return(at: np.ndarray, length: int) -> np.ndarray:
        # fixed left-to-right product over each window: independent of the other sessions
        ok = at + 1 >= length
        out = np.ones((at.size, daily.shape[1]))
        for k in range(length):
            out = out * (1.0 + daily[np.where(ok, at - length + 1 + k, 0)])
        out[~ok] = np.nan
        return out - 1.0

    r21, r63 = window_return(pos, ROTATION_LAG), window_return(pos, RS_WINDOW)
    r63_then = window_return(np.maximum(pos - ROTATION_LAG, 0), RS_WINDOW)
    r63_then[pos < ROTATION_LAG] = np.nan
    rs21, rs63, rs63_then = (r[:, :-1] - r[:, -1:] for r in (r21, r63, r63_then))
    rank_now, rank_then = (pd.DataFrame(m).rank(axis=1, method="first", ascending=False).to_numpy()
                           for m in (rs63, rs63_then))
    n_groups = len(uniques)
    out = pd.DataFrame({
        "date": np.repeat(dates[pos], n_groups),
        "sector": arrow_strings(np.tile(np.arange(n_groups), pos.size), uniques),
        "n_symbols": counts[pos].astype(np.int64).ravel(),
        "return_21": r21[:, :-1].ravel(),
        "return_63": r63[:, :-1].ravel(),
        "rel_strength_21": rs21.ravel(),
        "rel_strength_63": rs63.ravel(),
        "rank": pd.array(rank_now.ravel(), dtype="Int64"),
        "rank_change_21": pd.array((rank_then - rank_now).ravel(), dtype="Int64"),
    })
    return out.sort_values(["date", "rank", "sector"], kind="stable", na_position="last").reset_index(drop=True)


def session_chunks(sessions: np.ndarray, session_chunk: int = 32) -> list[np.ndarray]:
    """Sorted ``sessions`` in runs of ``session_chunk``: the unit of work of ``session_context``."""
    sessions = np.sort(np.asarray(sessions, dtype="datetime64[ns]"))
    return [sessions[i : i + session_chunk] for i in range(0, sessions.size, max(1, session_chunk))]


def context_frames(chunks: list[tuple[pd.DataFrame, pd.DataFrame]], rotation: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``session_context`` results in chunk (session) order, plus ``sector_rotation``, as the three tables."""
    chunks = chunks or [_empty_frames()]
    # chunks are in session order and each is ordered within, so concatenation keeps the order
    return {
        "symbol_context": pd.concat([c[0] for c in chunks], ignore_index=True),
        "sector_rotation": rotation,
        "top_pairs": pd.concat([c[1] for c in chunks], ignore_index=True),
    }


def cross_asset_context(returns: ReturnsPanel, sectors: pd.Series, sessions: np.ndarray, top_k: int = 25,
                        session_chunk: int = 32) -> dict[str, pd.DataFrame]:
    """The three context tables in-process (``dask_runner`` maps the same chunks on a cluster)."""
    with _single_threaded_blas():
        chunks = [session_context(returns, sectors, chunk, top_k) for chunk in session_chunks(sessions, session_chunk)]
    return context_frames(chunks, sector_rotation(returns, sectors, sessions))


def _single_threaded_blas():
    """Run the small (60-deep) products on one BLAS thread, as Dask workers do.

    Multi-threaded OpenBLAS is slower on these shapes (and much slower on a busy machine),
    and one thread keeps the in-process and distributed paths on the same kernel.
    ``threadpoolctl`` is optional: without it this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
