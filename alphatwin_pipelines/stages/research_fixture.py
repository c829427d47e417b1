"""Build a small, complete research data directory through the real stages, without Dagster.

Tests, benchmarks and demos of the stages after the scanner need cleaned bars, features and
scanner results that came through the same code as production; this runs those stages in order
on the offline synthetic market.
"""

from __future__ import annotations

from pathlib import Path

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.ingest import RAW_TABLE, ingest
from alphatwin_pipelines.schema import frame_to_arrow
from alphatwin_pipelines.sources import make_source
from alphatwin_pipelines.stages.cleaning import build_events, clean_sessions
from alphatwin_pipelines.stages.features import feature_sessions
from alphatwin_pipelines.stages.quality import validate_sessions
from alphatwin_pipelines.stages.scanner import scan_sessions
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import UNIVERSE
from alphatwin_pipelines.universe import resolve_universe


def build_cleaned(store: TableStore, source, sessions) -> None:
    """Universe, raw, validated, adjustment factors and cleaned bars of ``source`` for ``sessions``."""
    universe = resolve_universe(None, source)
    store.write_table(UNIVERSE, frame_to_arrow(universe))
    ingest(source, store, universe["symbol"].tolist(), sessions, table=RAW_TABLE)
    validate_sessions(store, sessions)
    build_events(store, sessions)
    clean_sessions(store, sessions)


def build_research_data(data_dir, *, n_symbols: int = 40, start: str = "2023-01-03", end: str = "2024-12-31",
                        seed: int = 7, scan: bool = True) -> TableStore:
    """:func:`build_cleaned`, then features and (optionally) scanner tables in ``data_dir``."""
    store = TableStore(Path(data_dir))
    sessions = sessions_between(start, end)
    # Clean bars: the research stages are tested on the market itself, the defects elsewhere.
    build_cleaned(store, make_source("synthetic", seed=seed, n_symbols=n_symbols, defects=0), sessions)
    feature_sessions(store, sessions)
    if scan:
        scan_sessions(store, sessions)
    return store
