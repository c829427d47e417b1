"""Scanner stage: signals over the whole universe, with cross-asset context, on Dask."""

import dagster as dg
import pandas as pd

from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.reporting import markdown_table
from alphatwin_pipelines.stages.scanner import scan_sessions
from alphatwin_pipelines.tables import CLEANED, FEATURES, SCANNER, SECTOR_ROTATION, SYMBOL_CONTEXT, TOP_PAIRS, UNIVERSE, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import DaskResource, StorageResource

_DESCRIPTIONS = {
    SCANNER: "Trend, mean-reversion, momentum and breakout signals with scores, ranks and the evidence behind them.",
    SYMBOL_CONTEXT: "Each symbol's 60-session correlation and beta to its sector and to the market.",
    SECTOR_ROTATION: "Sector relative strength against the market, ranked.",
    TOP_PAIRS: "The most correlated symbol pairs over the last 60 sessions.",
}


@dg.multi_asset(
    specs=[dg.AssetSpec(name, deps=[CLEANED, FEATURES, UNIVERSE], group_name="scanner", kinds={"parquet", "dask"}, description=text)
           for name, text in _DESCRIPTIONS.items()],
    partitions_def=nyse_sessions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def scanner(context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource):
    """Symbol shards are Dask partitions; the context needs every symbol and is assembled after."""
    sessions = sessions_of(context)
    with measure() as cost, dask.client() as client:
        try:
            result = scan_sessions(storage.store(), sessions, client=client)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
    signals = result.signals
    per_day = signals.groupby("date").size() if len(signals) else pd.Series(dtype=int)
    for session in sessions:
        context.add_asset_metadata({"hits": int(per_day.get(session, 0))}, asset_key=SCANNER, partition_key=session_key(session))
    summary = result.summary
    top = pd.DataFrame(summary.get("top_20", []))
    yield dg.MaterializeResult(asset_key=SCANNER, metadata={
        "symbols_scanned": summary.get("symbols_scanned", 0),
        "hits": summary.get("hits", 0),
        "hits_per_family": dg.MetadataValue.json(summary.get("hits_per_family", {})),
        f"top_20 ({summary.get('last_session')})": dg.MetadataValue.md(markdown_table(top)),
        "dask_workers": workers,
        **cost.as_metadata()})
    for name in (SYMBOL_CONTEXT, SECTOR_ROTATION, TOP_PAIRS):
        yield dg.MaterializeResult(asset_key=name, metadata=cost.as_metadata())
