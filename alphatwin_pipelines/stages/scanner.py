"""Scanner stage: cleaned bars in, signals and cross-asset context per session out.

The per-symbol work runs on symbol shards (Dask partitions when a client is given); the
cross-asset context needs every symbol and is assembled after the shards come back. The bars
are adjusted as of the last scanned session: every signal is scale-free per symbol (crosses,
RSI, band position, z-scores, returns, breakouts, volume ratios), so adjusting as of that
session gives the same signals as adjusting as of each session.
"""

from __future__ import annotations

import pandas as pd

from alphatwin_pipelines.calendar import lookback_start
from alphatwin_pipelines.scanner import ScanConfig, ScanResult, run_scan
from alphatwin_pipelines.scanner.cross_asset import CONTEXT_LOOKBACK
from alphatwin_pipelines.scanner.signals import MAX_LOOKBACK
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import (
    CLEANED, SCANNER, SECTOR_ROTATION, SYMBOL_CONTEXT, TOP_PAIRS, UNIVERSE, read_adjusted, require_partitions,
)

#: History read before the first scanned session: the slowest signal plus a warm-up for the
#: recursive indicators (Wilder ADX/RSI, EMA crosses).
LOOKBACK_SESSIONS = max(MAX_LOOKBACK, CONTEXT_LOOKBACK) + 60

OUTPUT_TABLES = {SCANNER: "signals", SYMBOL_CONTEXT: "symbol_context", SECTOR_ROTATION: "sector_rotation", TOP_PAIRS: "top_pairs"}


def scan_sessions(store: TableStore, sessions: pd.DatetimeIndex, client=None, config: ScanConfig | None = None) -> ScanResult:
    """Scan ``sessions`` and replace their partitions of the four scanner tables."""
    require_partitions(store, CLEANED, sessions)
    bars = read_adjusted(store, start=lookback_start(sessions[0], LOOKBACK_SESSIONS), end=sessions[-1], as_of=sessions[-1],
                         columns=())
    universe = store.read_table(UNIVERSE)
    with store.batch():  # one unit: if anything fails, no partition is replaced
        # signals are written group by group while the workers still compute the context
        on_ranked = lambda frame, group: store.write_sessions(SCANNER, frame, group)  # noqa: E731
        result = run_scan(bars, universe, sessions, client=client, config=config, on_ranked=on_ranked)
        store.write_tables_by_session({table: getattr(result, attribute) for table, attribute in OUTPUT_TABLES.items()
                                       if table != SCANNER}, sessions)
    return result
