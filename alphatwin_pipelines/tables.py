"""Names of the stored tables and the reads that every stage shares.

Table names are the Dagster asset names, so a user who sees ``cleaned_ohlcv`` in the UI
types the same name into ``load``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alphatwin_pipelines.adjustment import EVENT_COLUMNS, adjust
from alphatwin_pipelines.calendar import previous_sessions
from alphatwin_pipelines.data_dir import resolve_data_dir
from alphatwin_pipelines.objectstore import is_remote
from alphatwin_pipelines.storage import REJECTED_INPUTS_LOG, TableStore

UNIVERSE = "universe"
RAW = "raw_ohlcv"
VALIDATED = "validated_ohlcv"
QUARANTINED = "quarantined_ohlcv"
#: The session gate's decision per session (``quality.gate``): downstream skips held sessions.
GATE = "quality_gate"
FACTORS = "adjustment_factors"
CLEANED = "cleaned_ohlcv"
FEATURES = "features"
SCANNER = "scanner_results"
SYMBOL_CONTEXT = "symbol_context"
SECTOR_ROTATION = "sector_rotation"
TOP_PAIRS = "top_pairs"
# Whole tables (no session partitions), each replaced atomically by its asset.
OPTIMISED = "optimised_strategies"
OPTIMISATION_TRIALS = "optimisation_trials"
VALIDATION = "validation_reports"
STRATEGY_RETURNS = "strategy_returns"
STRATEGY_POSITIONS = "strategy_positions"
STRATEGY_CARDS = "strategy_cards"
ALLOCATIONS = "portfolio_allocations"
REBALANCE_SUGGESTIONS = "rebalance_suggestions"
# Alpha models (docs/contracts.md). Labels are partitioned by the session they become *known*
# (``available``), so a read up to s is everything a trader knew at s; predictions by decision session.
ALPHA_LABELS = "alpha_labels"
ALPHA_MODELS = "alpha_models"  # whole table of every model version; artifacts in alpha_models/<version>.pkl
ALPHA_PREDICTIONS = "alpha_predictions"
ALPHA_FACTOR_REPORT = "alpha_factor_report"
#: The asset that keeps a per-symbol history index of the tables read by symbol (``symbol_index``).
SYMBOL_INDEX = "symbol_history_index"
SYMBOL_INDEXED = (CLEANED, FEATURES)
#: The append-only log of rejected input rows (a JSON-lines file, not Parquet).
REJECTED_INPUTS = REJECTED_INPUTS_LOG.removesuffix(".jsonl")


def version_table(allocation_version: str) -> str:
    """The immutable copy's table name of an allocation version: ``portfolio_allocations/<version>``."""
    return f"{ALLOCATIONS}/{allocation_version}"


def stored_path(store: TableStore, path) -> str:
    """``path`` (under the data directory) as a table stores it: relative to the data directory,
    so the directory can be moved or mounted elsewhere (or copied to an object store) and the
    table still points at the file."""
    if is_remote(path):
        root, key = store.data_dir.path.rstrip("/") + "/", path.path
        if not key.startswith(root):
            raise ValueError(f"{path} is not under the data directory {store.data_dir}")
        return key[len(root):]
    return Path(path).relative_to(store.data_dir).as_posix()


def resolve_stored_path(store: TableStore, stored: str):
    """A path read from a table, under ``store``'s data directory (an absolute one, or an object
    URL, is kept as is): a ``Path``, or a ``UPath`` on an object store."""
    if is_remote(stored):
        return resolve_data_dir(stored)
    path = Path(stored)
    return path if path.is_absolute() else store.data_dir / path.as_posix()


class MissingUpstreamError(RuntimeError):
    """A stage was asked for sessions whose upstream partitions were never materialised."""


def require_partitions(store: TableStore, table: str, sessions: pd.DatetimeIndex) -> None:
    stored = store.stored_sessions(table)
    missing = sessions[~sessions.isin(stored)]
    if len(missing):
        shown = ", ".join(f"{d:%Y-%m-%d}" for d in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise MissingUpstreamError(
            f"{table} has no partition for {len(missing)} of the requested session(s) ({shown}): "
            f"materialise {table} for that range first"
        )


def read_range(store: TableStore, table: str, sessions: pd.DatetimeIndex, columns=None) -> pd.DataFrame:
    return store.read_partitions(table, sessions[0], sessions[-1], columns=columns)


def read_lookback(store: TableStore, table: str, first_session, count: int, columns=None) -> pd.DataFrame:
    """The ``count`` stored sessions of ``table`` before ``first_session`` (history for rules and fills)."""
    before = previous_sessions(first_session, count)
    if len(before) == 0:
        return pd.DataFrame()
    return store.read_partitions(table, before[0], before[-1], columns=columns)


def read_events(store: TableStore, as_of=None, start=None) -> pd.DataFrame:
    """Every stored corporate-action event dated in [``start``, ``as_of``] (default: all)."""
    return store.read_partitions(FACTORS, start=start, end=as_of, cached=True)


#: The cleaned columns ``adjust`` reads to add the adjusted ones.
ADJUSTMENT_INPUTS = ("symbol", "date", "open", "high", "low", "close", "volume")


def read_adjusted(store: TableStore, start=None, end=None, symbols=None, as_of=None, columns=None) -> pd.DataFrame:
    """Cleaned bars with ``adj_open/high/low/close`` and ``adj_volume``, backward-adjusted as of
    ``as_of`` (default: the latest cleaned session), using only events known by then.

    ``columns`` limits the cleaned columns read to these plus ``ADJUSTMENT_INPUTS``: leaving
    out the text columns (source, flags) cuts a five-year read by a third.
    """
    stored = store.stored_sessions(CLEANED)
    if len(stored) == 0:
        raise FileNotFoundError(f"{CLEANED} has no partitions under {store.data_dir}: materialise it first")
    cutoff = pd.Timestamp(as_of) if as_of is not None else stored[-1]
    upper = min(pd.Timestamp(end), cutoff) if end is not None else cutoff
    wanted = None if columns is None else list(dict.fromkeys([*ADJUSTMENT_INPUTS, *columns]))
    bars = store.read_partitions(CLEANED, start, upper, symbols=symbols, columns=wanted, cached=True)
    # A bar is adjusted by the events after it only, so bars from ``start`` need no older event:
    # a nightly run reads its lookback's events, not the whole history's.
    events = read_events(store, as_of=cutoff, start=start)
    if symbols and len(events):  # with no factors stored yet there is no symbol column to filter
        events = events[events["symbol"].isin([s.upper() for s in symbols])]
    return adjust(bars, factors=events if len(events) else pd.DataFrame(columns=list(EVENT_COLUMNS)), as_of=cutoff)
