"""The per-symbol history index of the tables that are read by symbol (a weekly job and after backfills)."""

import dagster as dg

from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.tables import SYMBOL_INDEX, SYMBOL_INDEXED
from assets.resources import StorageResource


@dg.asset(name=SYMBOL_INDEX, deps=list(SYMBOL_INDEXED), group_name="storage", kinds={"arrow"})
def symbol_history_index(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Per-symbol history files (``<table>/_by_symbol/<YYYY>.arrow``) of cleaned bars and features.

    ``load(table, symbols=...)`` and every read by symbol take a symbol's whole history from them
    instead of opening every session's file. Only years whose session files changed are rebuilt;
    a session written after the compaction is read from its own file, so reads are never stale.
    """
    store = storage.store()
    metadata = {}
    with measure() as cost:
        for table in SYMBOL_INDEXED:
            if not store.table_dir(table).is_dir():
                context.log.info(f"{table} has no partitions yet: nothing to index")
                continue
            report = store.compact_by_symbol(table)
            for year, reason in report.skipped.items():
                context.log.warning(f"{table} {year} not indexed (reads by symbol open its session files): {reason}")
            context.log.info(f"{table}: rebuilt {report.built or 'no year'}, current {len(report.current)} year(s), "
                             f"removed {report.removed or 'none'}")
            metadata[f"{table}/sessions_indexed"] = report.sessions
            metadata[f"{table}/years_rebuilt"] = len(report.built)
            metadata[f"{table}/years_skipped"] = len(report.skipped)
            metadata[f"{table}/mib"] = round(report.bytes / 2**20, 1)
    return dg.MaterializeResult(metadata={**metadata, **cost.as_metadata()})
