"""The universe scan: shard by symbol, detect signals per shard, gather, rank, add context.

``scan`` runs everything in-process; ``dask_runner.run_scan`` maps the same ``scan_shard``
over symbol shards on a Dask cluster. Both gather into ``assemble``, which is the only step
that needs every symbol (ranking and cross-asset context), so results do not depend on the
runner or on the shard count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from alphatwin_pipelines.scanner.cross_asset import CONTEXT_LOOKBACK, ReturnsPanel, cross_asset_context, merge_returns
from alphatwin_pipelines.scanner.packed import PackedStrings
from alphatwin_pipelines.scanner.ranking import RawHits, ranked_signals
from alphatwin_pipelines.scanner.signals import (FAMILIES, SIGNAL_NAMES, SIGNALS, Evidence, ScanConfig,
                                                 format_shard_evidence, symbol_signals)

BAR_INPUT_COLUMNS = ("symbol", "date", "adj_high", "adj_low", "adj_close", "adj_volume")
SIGNAL_COLUMNS = ["date", "symbol", "sector", "family", "signal", "direction", "score",
                  "rank_family", "rank_overall", "evidence"]
TOP_N = 20


class ShardCounts(NamedTuple):
    """What the summary counts, per shard: summed over shards on the driver rather than
    counted there over a backfill's signal names, which takes the driver's CPU."""

    symbols_scanned: int  # symbols with a bar on at least one scanned session
    hits_per_signal: np.ndarray  # int64, one count per ``SIGNAL_NAMES`` entry


class ShardResult(NamedTuple):
    signals: pd.DataFrame  # symbol_code, date, signal_id, direction, score (unranked)
    evidence: PackedStrings  # one JSON object per signals row
    counts: ShardCounts


@dataclass
class ScanInput:
    bars: pd.DataFrame  # BAR_INPUT_COLUMNS, universe symbols, dates <= last session, sorted
    sessions: np.ndarray  # sorted unique datetime64[ns]
    context_start: np.datetime64
    sectors: pd.Series  # symbol -> sector
    universe_size: int


@dataclass
class ScanResult:
    signals: pd.DataFrame
    symbol_context: pd.DataFrame
    sector_rotation: pd.DataFrame
    top_pairs: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def top(self, n: int = TOP_N, date=None) -> pd.DataFrame:
        """The n best signals across families on ``date`` (default: the last scanned session)."""
        return top_signals(self.signals, n, date)


def top_signals(signals: pd.DataFrame, n: int = TOP_N, date=None) -> pd.DataFrame:
    """The n lowest ``rank_overall`` rows of one session (ties in row order, as ``nsmallest``).

    Only the chosen rows are taken. Filtering a backfill's whole frame first copies all the
    evidence, and so does a take across the chunks of a gathered frame's Arrow columns; a
    scan's rows of one session are one slice."""
    if signals.empty:
        return signals.head(0)
    dates = signals["date"].to_numpy(dtype="datetime64[ns]")
    day = dates.max() if date is None else np.datetime64(pd.Timestamp(date).as_unit("ns").asm8)
    rows = np.flatnonzero(dates == day)
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        signals, rows = signals.iloc[rows[0] : rows[-1] + 1], np.arange(rows.size)
    best = rows[np.argsort(signals["rank_overall"].to_numpy()[rows], kind="stable")[:n]]
    return signals.iloc[best].reset_index(drop=True)


def sorted_dates(dates: np.ndarray) -> np.ndarray:
    """The distinct dates, sorted: hashed first, so only the distinct values are sorted, which
    is faster than ``np.unique`` on every bar (this runs before any worker can start)."""
    return np.sort(pd.unique(np.asarray(dates, dtype="datetime64[ns]")))


def resolve_sessions(dates: np.ndarray, sessions) -> np.ndarray:
    """``None`` = the last date in the bars, ``"all"`` = every date, else one date or many."""
    if sessions is None:
        return np.asarray([dates.max()], dtype="datetime64[ns]") if dates.size else dates[:0]
    if isinstance(sessions, str) and sessions == "all":
        return sorted_dates(dates)
    if isinstance(sessions, (str, dt.date, pd.Timestamp, np.datetime64)):
        sessions = [sessions]
    out = pd.DatetimeIndex(pd.to_datetime(list(sessions))).normalize()
    return np.unique(out.to_numpy(dtype="datetime64[ns]"))


def prepare(cleaned: pd.DataFrame, universe: pd.DataFrame | None, sessions=None) -> ScanInput:
    """Select the columns and rows the scan reads (never mutating ``cleaned``).

    ``bars.symbol`` is a categorical over the sorted symbol names, so shards carry small
    integer codes and every shard shares one code book.
    """
    missing = [c for c in BAR_INPUT_COLUMNS if c not in cleaned.columns]
    if missing:
        raise ValueError(f"cleaned bars lack column(s) {missing}; the scanner reads {list(BAR_INPUT_COLUMNS)}")
    dates = cleaned["date"].to_numpy(dtype="datetime64[ns]")
    codes, names = pd.factorize(cleaned["symbol"], sort=True)
    names = np.asarray(names, dtype=object)
    distinct = sorted_dates(dates)
    wanted = resolve_sessions(distinct, sessions)
    if universe is not None and len(universe):
        uni = universe.drop_duplicates("symbol")
        sectors = pd.Series(uni["sector"].astype(object).fillna("Unknown").to_numpy(),
                            index=uni["symbol"].astype(object).to_numpy(), name="sector")
        member = sectors.index.get_indexer(names) >= 0  # hashed; np.isin compares every pair of objects
    else:
        sectors = pd.Series("Unknown", index=names, dtype=object, name="sector")
        member = np.ones(names.size, dtype=bool)
    keep = None  # every row, the usual case: no copies of ``cleaned``'s columns
    if not member.all() or (codes < 0).any():  # rows without a symbol cannot be scanned
        keep = member[codes] & (codes >= 0)
    if wanted.size and distinct.size and distinct[-1] > wanted[-1]:
        keep = (dates <= wanted[-1]) if keep is None else keep & (dates <= wanted[-1])
    values = {c: cleaned[c].to_numpy(dtype=np.float64) for c in BAR_INPUT_COLUMNS[2:]}  # float64 columns: views
    if keep is not None:
        codes, dates = codes[keep], dates[keep]
        values = {c: v[keep] for c, v in values.items()}
    same = codes[1:] == codes[:-1]
    if not ((codes[1:] >= codes[:-1]).all() and (dates[1:][same] > dates[:-1][same]).all()):
        order = np.lexsort((dates, codes))
        codes, dates = codes[order], dates[order]
        values = {c: v[order] for c, v in values.items()}
        same = codes[1:] == codes[:-1]
        if (dates[1:][same] == dates[:-1][same]).any():
            raise ValueError("cleaned bars have more than one row for some (symbol, date)")
    # copy=False: one block per column, so a shard's columns are contiguous slices that Dask
    # sends uncopied (a consolidated float block costs a stack here and a copy per shard)
    bars = pd.DataFrame({"symbol": pd.Categorical.from_codes(codes, names), "date": dates, **values}, copy=False)
    all_dates = sorted_dates(dates) if keep is not None else distinct
    first = np.searchsorted(all_dates, wanted[0]) if wanted.size and all_dates.size else 0
    context_start = all_dates[max(0, first - CONTEXT_LOOKBACK)] if all_dates.size else np.datetime64("NaT", "ns")
    return ScanInput(bars, wanted, context_start, sectors, len(sectors))


def _symbol_starts(codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if codes.size else np.empty(0, dtype=np.int64)


def make_shards(bars: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """Split sorted bars into ≤ n_shards contiguous blocks of whole symbols, balanced by rows."""
    if bars.empty:
        return [bars]
    starts = _symbol_starts(bars["symbol"].cat.codes.to_numpy())
    n_shards = max(1, min(int(n_shards), starts.size))
    targets = len(bars) * np.arange(1, n_shards) / n_shards
    cuts = np.unique(np.r_[0, starts[np.minimum(np.searchsorted(starts, targets), starts.size - 1)], len(bars)])
    return [bars.iloc[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def scan_shard(
    bars: pd.DataFrame, sessions: np.ndarray, config: ScanConfig | None = None
) -> ShardResult:
    """Signals of every symbol in ``bars`` (from ``prepare``) on ``sessions``.

    Pure: the same bars, sessions and config always give the same frames.
    """
    config = config or ScanConfig()
    codes = bars["symbol"].cat.codes.to_numpy().astype(np.int64)
    names = np.asarray(bars["symbol"].cat.categories, dtype=object)
    dates = bars["date"].to_numpy(dtype="datetime64[ns]")
    high, low, close, volume = (bars[c].to_numpy(dtype=np.float64) for c in BAR_INPUT_COLUMNS[2:])
    n = len(codes)
    starts = _symbol_starts(codes)
    ends = np.r_[starts[1:], n].astype(np.int64)
    selected = np.isin(dates, np.asarray(sessions, dtype="datetime64[ns]"))
    parts: dict[str, list] = {k: [] for k in ("rows", "ids", "dirs", "scores")}
    evidence: list[dict[int, Evidence]] = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        if not selected[a:b].any():
            continue
        hits = symbol_signals(high[a:b], low[a:b], close[a:b], volume[a:b], selected[a:b], config)
        for key, arr in zip(parts, (hits.rows + a, hits.signal_ids, hits.directions, hits.scores)):
            parts[key].append(arr)
        evidence.append(hits.evidence)
    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    rows = cat["rows"].astype(np.int64)
    signals = pd.DataFrame({
        "symbol_code": codes[rows],
        "date": dates[rows],
        "signal_id": cat["ids"].astype(np.int16),
        "direction": cat["dirs"].astype(np.int8),
        "score": cat["scores"].astype(np.float64),
    })
    evidence_text = format_shard_evidence(evidence, signals["signal_id"].to_numpy())
    scanned = int(np.count_nonzero(np.add.reduceat(selected, starts))) if n else 0
    counts = ShardCounts(scanned, np.bincount(cat["ids"].astype(np.int64), minlength=len(SIGNAL_NAMES)))
    return ShardResult(signals, PackedStrings.from_arrow(evidence_text), counts)


def shard_returns(bars: pd.DataFrame, context_start) -> ReturnsPanel:
    """Simple daily returns of every symbol in ``bars`` from ``context_start``, the input of the
    cross-asset context. Apart from ``scan_shard`` because it is a small part of it: on a
    cluster the context can then start before the signals are done."""
    codes = bars["symbol"].cat.codes.to_numpy().astype(np.int64)
    names = np.asarray(bars["symbol"].cat.categories, dtype=object)
    dates = bars["date"].to_numpy(dtype="datetime64[ns]")
    close = bars["adj_close"].to_numpy(dtype=np.float64)
    returns = np.full(codes.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns[1:] = close[1:] / close[:-1] - 1.0
    returns[_symbol_starts(codes)] = np.nan  # no return across two symbols
    keep = dates >= context_start
    day, day_pos = np.unique(dates[keep], return_inverse=True)
    sym, sym_pos = np.unique(codes[keep], return_inverse=True)
    matrix = np.full((day.size, sym.size), np.nan)
    matrix[day_pos, sym_pos] = returns[keep]
    return ReturnsPanel(day, names[sym], matrix)


def summarize(inputs: ScanInput, signals: pd.DataFrame, counts: list[ShardCounts]) -> dict:
    top = top_signals(signals, TOP_N)
    hits = np.sum([c.hits_per_signal for c in counts], axis=0) if counts else np.zeros(len(SIGNAL_NAMES), np.int64)
    per_signal = {name: int(n) for name, n in sorted(zip(SIGNAL_NAMES, hits.tolist())) if n}
    per_family = {f: sum(n for s, n in per_signal.items() if SIGNALS[s][0] == f) for f in FAMILIES}
    return {
        "universe_symbols": int(inputs.universe_size),
        "symbols_scanned": sum(c.symbols_scanned for c in counts),
        "sessions": int(inputs.sessions.size),
        "first_session": str(pd.Timestamp(inputs.sessions[0]).date()) if inputs.sessions.size else None,
        "last_session": str(pd.Timestamp(inputs.sessions[-1]).date()) if inputs.sessions.size else None,
        "hits": int(len(signals)),
        "hits_per_family": per_family,
        "hits_per_signal": per_signal,
        "top_20": [
            {"symbol": r.symbol, "signal": r.signal, "direction": int(r.direction), "score": round(float(r.score), 3)}
            for r in top.itertuples()
        ],
    }


def assemble(inputs: ScanInput, rank: Callable[[], pd.DataFrame], counts: Callable[[], list[ShardCounts]],
             context: Callable[[], dict]) -> ScanResult:
    """Ranked signals (``rank()``), the shards' ``counts()`` and the cross-asset context tables
    (``context()``) -> ``ScanResult`` with its summary. ``rank`` and the summary come first: on
    a cluster, the workers are still computing the context meanwhile."""
    signals = rank()
    summary = summarize(inputs, signals, counts())
    tables = context()
    return ScanResult(signals, tables["symbol_context"], tables["sector_rotation"], tables["top_pairs"], summary)


def symbol_names(inputs: ScanInput) -> np.ndarray:
    return np.asarray(inputs.bars["symbol"].cat.categories, dtype=object)


def scan(
    cleaned: pd.DataFrame,
    universe: pd.DataFrame | None,
    sessions=None,
    config: ScanConfig | None = None,
    n_shards: int = 1,
    on_ranked: Callable[[pd.DataFrame, np.ndarray], None] | None = None,
) -> ScanResult:
    """Scan the universe in-process as of ``sessions`` (None = last session, "all", a date or dates).

    ``on_ranked(frame, sessions)`` receives the ranked signals of ``sessions`` as soon as they
    are ready (here all at once; on Dask group by group), e.g. to start writing them.
    """
    config = config or ScanConfig()
    inputs = prepare(cleaned, universe, sessions)
    shards = make_shards(inputs.bars, n_shards)
    results = [scan_shard(s, inputs.sessions, config) for s in shards]
    hits = [RawHits(r.signals, r.evidence) for r in results]

    def rank() -> pd.DataFrame:
        frame = ranked_signals(hits, inputs.sessions, symbol_names(inputs), inputs.sectors)
        if on_ranked is not None:
            on_ranked(frame, inputs.sessions)
        return frame

    returns = lambda: merge_returns([shard_returns(s, inputs.context_start) for s in shards])  # noqa: E731
    context = lambda: cross_asset_context(returns(), inputs.sectors, inputs.sessions,  # noqa: E731
                                          config.top_k_pairs, config.session_chunk)
    return assemble(inputs, rank, lambda: [r.counts for r in results], context)
