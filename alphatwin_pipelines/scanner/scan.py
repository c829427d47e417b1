"""The universe scan: shard by symbol, detect signals per shard, gather, rank, add context.

``scan`` runs everything in-process; ``dask_runner.run_scan`` maps the same ``scan_shard``
over symbol shards on a Dask cluster. Both gather into ``assemble``, which is the only step
that needs every symbol (ranking and cross-asset context), so results do not depend on the
runner or on the shard count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.scanner.cross_asset import CONTEXT_LOOKBACK, arrow_strings, merge_returns, start_context
from alphatwin_pipelines.scanner.signals import FAMILIES, SIGNAL_FAMILY, SIGNAL_NAMES, ScanConfig, symbol_signals

BAR_INPUT_COLUMNS = ("symbol", "date", "adj_high", "adj_low", "adj_close", "adj_volume")
SIGNAL_COLUMNS = ["date", "symbol", "sector", "family", "signal", "direction", "score",
                  "rank_family", "rank_overall", "evidence"]
TOP_N = 20


class PackedStrings(NamedTuple):
    """Strings as Arrow's offsets + bytes in two NumPy arrays.

    Dask ships NumPy arrays as raw out-of-band frames, several times faster than a pickled
    string column; the evidence of a backfill is ~100 MB.
    """

    offsets: np.ndarray  # int64, n + 1
    data: np.ndarray  # uint8, UTF-8 bytes

    @classmethod
    def pack(cls, strings: list[str]) -> PackedStrings:
        array = pa.array(strings, type=pa.large_string())
        _, offsets, data = array.buffers()
        return cls(np.frombuffer(offsets, dtype=np.int64)[: len(array) + 1].copy(),
                   np.frombuffer(data, dtype=np.uint8).copy() if data is not None else np.empty(0, np.uint8))

    def to_arrow(self) -> pa.LargeStringArray:
        return pa.LargeStringArray.from_buffers(len(self.offsets) - 1, pa.py_buffer(self.offsets), pa.py_buffer(self.data))


class ShardResult(NamedTuple):
    signals: pd.DataFrame  # symbol_code, date, signal_id, direction, score (unranked)
    evidence: PackedStrings  # one JSON object per signals row
    returns: pd.DataFrame  # sessions × shard symbols, simple daily returns from context_start


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
        if self.signals.empty:
            return self.signals.head(0)
        day = self.signals["date"].max() if date is None else pd.Timestamp(date)
        rows = self.signals[self.signals["date"] == day]
        return rows.nsmallest(n, "rank_overall").reset_index(drop=True)


def resolve_sessions(dates: np.ndarray, sessions) -> np.ndarray:
    """``None`` = the last date in the bars, ``"all"`` = every date, else one date or many."""
    if sessions is None:
        return np.asarray([dates.max()], dtype="datetime64[ns]") if dates.size else dates[:0]
    if isinstance(sessions, str) and sessions == "all":
        return np.unique(dates)
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
    wanted = resolve_sessions(dates, sessions)
    if universe is not None and len(universe):
        uni = universe.drop_duplicates("symbol")
        sectors = pd.Series(uni["sector"].astype(object).fillna("Unknown").to_numpy(),
                            index=uni["symbol"].astype(object).to_numpy(), name="sector")
        keep = np.isin(names, sectors.index.to_numpy())[codes]
    else:
        sectors = pd.Series("Unknown", index=names, dtype=object, name="sector")
        keep = np.ones(len(cleaned), dtype=bool)
    keep = keep & (codes >= 0)  # rows without a symbol cannot be scanned
    if wanted.size:
        keep = keep & (dates <= wanted[-1])
    codes, dates = codes[keep], dates[keep]
    values = {c: cleaned[c].to_numpy(dtype=np.float64)[keep] for c in BAR_INPUT_COLUMNS[2:]}
    same = codes[1:] == codes[:-1]
    if not ((codes[1:] >= codes[:-1]).all() and (dates[1:][same] > dates[:-1][same]).all()):
        order = np.lexsort((dates, codes))
        codes, dates = codes[order], dates[order]
        values = {c: v[order] for c, v in values.items()}
        same = codes[1:] == codes[:-1]
        if (dates[1:][same] == dates[:-1][same]).any():
            raise ValueError("cleaned bars have more than one row for some (symbol, date)")
    bars = pd.DataFrame({"symbol": pd.Categorical.from_codes(codes, names), "date": dates, **values})
    all_dates = np.unique(dates)
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
    bars: pd.DataFrame, sessions: np.ndarray, context_start, config: ScanConfig | None = None
) -> ShardResult:
    """Signals of every symbol in ``bars`` (from ``prepare``) on ``sessions``, and their returns.

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
    evidence: list[str] = []
    returns = np.full(n, np.nan)
    for a, b in zip(starts.tolist(), ends.tolist()):
        returns[a + 1 : b] = close[a + 1 : b] / close[a : b - 1] - 1.0
        if not selected[a:b].any():
            continue
        hits = symbol_signals(high[a:b], low[a:b], close[a:b], volume[a:b], selected[a:b], config)
        for key, arr in zip(parts, (hits.rows + a, hits.signal_ids, hits.directions, hits.scores)):
            parts[key].append(arr)
        evidence.extend(hits.evidence)
    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    rows = cat["rows"].astype(np.int64)
    signals = pd.DataFrame({
        "symbol_code": codes[rows],
        "date": dates[rows],
        "signal_id": cat["ids"].astype(np.int16),
        "direction": cat["dirs"].astype(np.int8),
        "score": cat["scores"].astype(np.float64),
    })
    keep = dates >= context_start
    day, day_pos = np.unique(dates[keep], return_inverse=True)
    sym, sym_pos = np.unique(codes[keep], return_inverse=True)
    matrix = np.full((day.size, sym.size), np.nan)
    matrix[day_pos, sym_pos] = returns[keep]
    panel = pd.DataFrame(matrix, index=pd.DatetimeIndex(day, name="date"), columns=pd.Index(names[sym], dtype=object))
    return ShardResult(signals, PackedStrings.pack(evidence), panel)


def _take_strings(packs: list[PackedStrings], order: np.ndarray) -> pd.arrays.ArrowStringArray:
    """The concatenated strings of ``packs``, in ``order`` (one combined Arrow array takes fast)."""
    arrow = pa.chunked_array([p.to_arrow() for p in packs], type=pa.large_string()).combine_chunks()
    return pd.array(arrow.take(pa.array(order, type=pa.int64())), dtype="string")


def _rank_within(keys: np.ndarray, presorted: bool = False) -> np.ndarray:
    """1-based position of each row among the rows with the same key, in the current order."""
    order = np.arange(keys.size) if presorted else np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, keys.size]))
    ranks = np.empty(keys.size, dtype=np.int64)
    ranks[order] = np.arange(keys.size) - group_start + 1
    return ranks


def rank_signals(
    signals: pd.DataFrame, evidence: list[PackedStrings], names: np.ndarray, sectors: pd.Series, sessions: np.ndarray
) -> pd.DataFrame:
    """Name, rank (1 = strongest by score; ties by symbol then signal) and order the raw hits.

    ``evidence`` holds the rows' evidence strings, in the order of ``signals``.

    Output order: date, then rank_overall.
    """
    codes = signals["symbol_code"].to_numpy().astype(np.int64)
    ids = signals["signal_id"].to_numpy().astype(np.int64)
    day = np.searchsorted(sessions, signals["date"].to_numpy(dtype="datetime64[ns]"))
    order = np.lexsort((codes * len(SIGNAL_NAMES) + ids, -signals["score"].to_numpy(), day))
    codes, ids, day = codes[order], ids[order], day[order]
    families = np.asarray([FAMILIES.index(f) for f in SIGNAL_FAMILY], dtype=np.int64)[ids]
    sector_codes, sector_names = pd.factorize(sectors.reindex(names).fillna("Unknown"))
    frame = pd.DataFrame({
        "date": sessions[day],
        "symbol": arrow_strings(codes, names),
        "sector": arrow_strings(sector_codes[codes], sector_names),
        "family": arrow_strings(families, FAMILIES),
        "signal": arrow_strings(ids, SIGNAL_NAMES),
        "direction": signals["direction"].to_numpy()[order].astype(np.int8),
        "score": signals["score"].to_numpy()[order].astype(np.float64),
        "rank_family": _rank_within(day * len(FAMILIES) + families),
        "rank_overall": _rank_within(day, presorted=True),
        "evidence": _take_strings(evidence, order),
    })
    return frame


def summarize(inputs: ScanInput, signals: pd.DataFrame, result: ScanResult) -> dict:
    present = inputs.bars.loc[inputs.bars["date"].isin(inputs.sessions), "symbol"]
    top = result.top(TOP_N)
    return {
        "universe_symbols": int(inputs.universe_size),
        "symbols_scanned": int(present.nunique()),
        "sessions": int(inputs.sessions.size),
        "first_session": str(pd.Timestamp(inputs.sessions[0]).date()) if inputs.sessions.size else None,
        "last_session": str(pd.Timestamp(inputs.sessions[-1]).date()) if inputs.sessions.size else None,
        "hits": int(len(signals)),
        "hits_per_family": {f: int((signals["family"] == f).sum()) for f in FAMILIES},
        "hits_per_signal": {k: int(v) for k, v in signals["signal"].value_counts().sort_index().items()},
        "top_20": [
            {"symbol": r.symbol, "signal": r.signal, "direction": int(r.direction), "score": round(float(r.score), 3)}
            for r in top.itertuples()
        ],
    }


def assemble(inputs: ScanInput, shards: list[ShardResult], config: ScanConfig | None = None, mapper=None) -> ScanResult:
    """Gathered shard results -> ranked signals, cross-asset context and summary.

    ``mapper`` (see ``cross_asset.start_context``) runs the per-session context elsewhere.
    """
    config = config or ScanConfig()
    returns = merge_returns([s.returns for s in shards])
    finish_context = start_context(returns, inputs.sectors, inputs.sessions, config.top_k_pairs,
                                   config.session_chunk, mapper=mapper)
    # ranking runs here while a mapper's context tasks run elsewhere
    raw = [s for s in shards if len(s.signals)] or shards[:1]
    names = np.asarray(inputs.bars["symbol"].cat.categories, dtype=object)
    signals = rank_signals(pd.concat([s.signals for s in raw], ignore_index=True), [s.evidence for s in raw],
                           names, inputs.sectors, inputs.sessions)
    context = finish_context()
    result = ScanResult(signals, context["symbol_context"], context["sector_rotation"], context["top_pairs"])
    result.summary = summarize(inputs, signals, result)
    return result


def scan(
    cleaned: pd.DataFrame,
    universe: pd.DataFrame | None,
    sessions=None,
    config: ScanConfig | None = None,
    n_shards: int = 1,
) -> ScanResult:
    """Scan the universe in-process as of ``sessions`` (None = last session, "all", a date or dates)."""
    config = config or ScanConfig()
    inputs = prepare(cleaned, universe, sessions)
    results = [scan_shard(s, inputs.sessions, inputs.context_start, config) for s in make_shards(inputs.bars, n_shards)]
    return assemble(inputs, results, config)
