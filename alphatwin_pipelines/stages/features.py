"""Feature stage: cleaned (adjusted-on-read) bars in, one feature partition per session out.

The bars of the whole run, plus the longest feature lookback before its first session, are
read and adjusted once, as of the run's last session; ``compute_features`` rescales price and
volume features to each row's own date, so every value at ``t`` is what a trader could
compute at ``t``. The features are computed in as few blocks as memory allows (a block holds
at most ``ROW_BUDGET`` rows, lookback included; each later block recomputes its own lookback
from the bars in memory), and written straight from the feature matrix to Arrow, a few
sessions at a time, on the store's writer threads. The cross-sectional scalings are filled in
those few sessions at a time too, so the writer threads encode while the main thread scales.

With a Dask client, each block's per-symbol work (every kernel, the point-in-time rescaling and
the time-series z-scores) runs as symbol shards on the cluster; the shards' matrices are joined
here in (symbol, day) order, and the cross-sectional scalings, which need every symbol of a
session, stay here. A symbol's features depend on its own rows only, so the values are the same
as in process, whatever the shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from alphatwin_pipelines.calendar import lookback_start
from alphatwin_pipelines.cluster import n_workers, run_tasks
from alphatwin_pipelines.features import FEATURES, max_lookback
from alphatwin_pipelines.features.compute import REQUIRED_COLUMNS, FeatureBlock, compute_block, normalise_sessions
from alphatwin_pipelines.quality.gate import held_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, FEATURES as FEATURE_TABLE, read_adjusted, require_partitions

#: Bar rows (lookback included) per computed block: bounds the memory of one block's features.
ROW_BUDGET = 1_500_000
#: Sessions converted to Arrow together before being cut into one file each.
WRITE_SESSIONS = 16
#: Symbol shards per worker on a cluster: a few each, so a slow or lost worker delays little.
SHARDS_PER_WORKER = 3
#: The partition schema (what ``frame_to_arrow`` makes of ``compute_features``'s frame).
SCHEMA = pa.schema([("symbol", pa.large_string()), ("date", pa.timestamp("ns")),
                    *((spec.name, pa.float64()) for spec in FEATURES)])
_HISTORY_COLUMN = [spec.name for spec in FEATURES].index("sma_200")


@dataclass
class FeatureReport:
    rows: dict[pd.Timestamp, int]
    symbols_with_history: dict[pd.Timestamp, int]  # symbols whose slowest feature is defined
    lookback_sessions: int
    held: pd.DatetimeIndex  # sessions of the run the quality gate holds back: no cleaned bars, no features


def feature_sessions(store: TableStore, sessions: pd.DatetimeIndex, row_budget: int = ROW_BUDGET,
                     client=None) -> FeatureReport:
    """Compute and replace the feature partitions of ``sessions`` (symbol shards on ``client``'s cluster if given)."""
    require_partitions(store, CLEANED, sessions)
    lookback = max_lookback()
    bars = read_adjusted(store, start=lookback_start(sessions[0], lookback), end=sessions[-1], as_of=sessions[-1],
                         columns=[c for c in REQUIRED_COLUMNS if not c.startswith("adj_")])
    bars = bars[list(REQUIRED_COLUMNS)]
    days = bars["date"].to_numpy(dtype="datetime64[ns]")
    rows, ready = {}, {}
    with store.batch():
        for chunk, start in _blocks(days, sessions, lookback, row_budget):
            in_window = (days >= np.datetime64(start, "ns")) & (days <= np.datetime64(chunk[-1], "ns"))
            block = _compute(bars if in_window.all() else bars[in_window], chunk, client)
            _write(store, block, chunk, rows, ready)
    return FeatureReport(rows, ready, lookback, held_sessions(store, sessions[0], sessions[-1]))


def _compute(bars: pd.DataFrame, chunk: pd.DatetimeIndex, client) -> FeatureBlock:
    """``compute_block`` without normalisation, here or as symbol shards on the cluster."""
    if client is None:
        return compute_block(bars, sessions=chunk, normalise=False)
    shards = symbol_shards(bars, SHARDS_PER_WORKER * n_workers(client))
    # the shards travel inside the tasks rather than scattered: the scheduler keeps a task's
    # inputs, so a task whose worker dies runs again elsewhere (a scattered shard would be lost)
    return join_blocks(run_tasks(_shard_block, shards, client, shared=chunk, name="features"))


def _shard_block(chunk: pd.DatetimeIndex, bars: pd.DataFrame) -> FeatureBlock:
    return compute_block(bars, sessions=chunk, normalise=False)


def symbol_shards(bars: pd.DataFrame, n_shards: int) -> list[pd.DataFrame]:
    """``bars`` cut into at most ``n_shards`` frames of whole symbols, each a run of sorted symbols,
    balanced by rows; in symbol order."""
    codes, names = pd.factorize(bars["symbol"].to_numpy(dtype=object), sort=True)
    if len(names) == 0 or (codes < 0).any():  # rows without a symbol: compute_block names the problem
        return [bars]
    rows = np.bincount(codes, minlength=len(names))
    n_shards = max(1, min(int(n_shards), len(names)))
    # the symbol each shard starts after: where the cumulative rows pass each equal share
    # (shares that end in one symbol give fewer shards), or every symbol with as many shards
    cuts = (np.arange(1, len(names)) if n_shards == len(names) else
            np.searchsorted(np.cumsum(rows), rows.sum() * np.arange(1, n_shards) / n_shards, side="left") + 1)
    shard_of = np.searchsorted(np.unique(cuts), np.arange(len(names)), side="right")
    return [bars[shard_of[codes] == k] for k in range(int(shard_of[-1]) + 1) if (shard_of == k).any()]


def join_blocks(blocks: list[FeatureBlock]) -> FeatureBlock:
    """The blocks of consecutive symbol shards as one block, as ``compute_block`` gives it for all their rows."""
    names = np.concatenate([b.names for b in blocks])
    offsets = np.cumsum([0] + [len(b.names) for b in blocks[:-1]])
    codes = np.concatenate([b.codes + offset for b, offset in zip(blocks, offsets)])
    values = np.empty((codes.size, blocks[0].values.shape[1]), order="F")
    row = 0
    for block in blocks:
        values[row : row + len(block.codes)] = block.values
        row += len(block.codes)
    return FeatureBlock(names, codes, np.concatenate([b.days for b in blocks]), values)


def _blocks(days: np.ndarray, sessions: pd.DatetimeIndex, lookback: int, budget: int) -> Iterator[tuple]:
    """Consecutive runs of ``sessions`` whose rows, with their lookback, fit ``budget`` (at least one session each)."""
    stored, counts = np.unique(days, return_counts=True)
    cumulative = np.r_[0, np.cumsum(counts)]
    targets = sessions.to_numpy(dtype="datetime64[ns]")
    rows_through = cumulative[np.searchsorted(stored, targets, side="right")]  # rows dated <= each session
    first = 0
    while first < len(sessions):
        start = lookback_start(sessions[first], lookback)
        before = cumulative[np.searchsorted(stored, np.datetime64(start, "ns"), side="left")]
        last = max(first, int(np.searchsorted(rows_through, before + budget, side="right")) - 1)
        yield sessions[first : last + 1], start
        first = last + 1


def _write(store: TableStore, block: FeatureBlock, chunk: pd.DatetimeIndex, rows: dict, ready: dict) -> None:
    """One file per session of ``chunk``: its rows in symbol order (``block`` is in (symbol, day) order).

    ``WRITE_SESSIONS`` sessions at a time are gathered, normalised across symbols and handed
    to the writer threads, which encode them while the next sessions are normalised.
    """
    names, codes, days, values = block
    order = np.argsort(days, kind="stable")
    by_day, chunk_days = days[order], chunk.to_numpy(dtype="datetime64[D]").astype(np.int64)
    bounds = np.searchsorted(by_day, chunk_days, side="left"), np.searchsorted(by_day, chunk_days, side="right")
    defined = ~np.isnan(values[:, _HISTORY_COLUMN])
    for a in range(0, len(chunk), WRITE_SESSIONS):
        b = min(a + WRITE_SESSIONS, len(chunk))
        lo, hi = bounds[0][a], bounds[1][b - 1]
        take = order[lo:hi]
        sessions = np.empty((take.size, values.shape[1]), order="F")
        for j in range(values.shape[1]):  # column by column: a row gather across columns is far slower
            np.take(values[:, j], take, out=sessions[:, j])
        normalise_sessions(sessions, days[take])
        table = pa.Table.from_arrays([
            pa.array(names[codes[take]], type=pa.large_string()),
            pa.array(days[take].astype("datetime64[D]").astype("datetime64[ns]"), type=pa.timestamp("ns")),
            *(pa.array(sessions[:, j], from_pandas=True) for j in range(sessions.shape[1])),
        ], schema=SCHEMA)
        for k in range(a, b):
            first, end = bounds[0][k], bounds[1][k]
            store.write_partition(FEATURE_TABLE, chunk[k], table.slice(first - lo, end - first))
            rows[chunk[k]] = int(end - first)
            ready[chunk[k]] = int(defined[order[first:end]].sum())
