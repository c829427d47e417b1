"""Feature stage: TA-Lib indicators and normalisations per session, point in time."""

import dagster as dg

from alphatwin_pipelines.cluster import n_workers
from alphatwin_pipelines.features import feature_table_markdown
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.stages.features import feature_sessions
from alphatwin_pipelines.tables import CLEANED, FACTORS, FEATURES, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import DaskResource, StorageResource


@dg.asset(
    name=FEATURES, deps=[CLEANED, FACTORS], group_name="features", kinds={"parquet", "talib"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"features": dg.MetadataValue.md(feature_table_markdown())},
)
def features(context: dg.AssetExecutionContext, storage: StorageResource, dask: DaskResource) -> dg.MaterializeResult:
    """Every declared feature for every symbol, computed only from data up to each session.

    A new session reads just the longest lookback before it; a backfill runs in blocks so
    memory stays bounded however long the range. With ``ALPHATWIN_DASK_SCHEDULER`` set, the
    symbols are computed in shards on that cluster.
    """
    with measure() as cost, dask.cluster_client() as client:
        workers = n_workers(client) if client is not None else 0
        try:
            report = feature_sessions(storage.store(), sessions_of(context), client=client)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for session, rows in report.rows.items():
        context.add_asset_metadata(
            {"rows": rows, "symbols_with_full_history": report.symbols_with_history[session],
             "held": bool(session in report.held), "dagster/row_count": rows},
            partition_key=session_key(session),
        )
    return dg.MaterializeResult(metadata={"lookback_sessions": report.lookback_sessions, "dask_workers": workers,
                                          **cost.as_metadata()})
