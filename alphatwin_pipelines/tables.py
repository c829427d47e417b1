"""Names of the stored tables and the reads that every stage shares.

Table names are the Dagster asset names, so a user who sees ``cleaned_ohlcv`` in the UI
types the same name into ``load``.
"""

from __future__ import annotations

import pandas as pd

from alphatwin_pipelines.calendar import previous_sessions
from alphatwin_pipelines.storage import TableStore

UNIVERSE = "universe"
RAW = "raw_ohlcv"
VALIDATED = "validated_ohlcv"
QUARANTINED = "quarantined_ohlcv"
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
