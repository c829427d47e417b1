"""Feature stage: TA-Lib indicators and normalisations per session, point in time."""

import dagster as dg

from alphatwin_pipelines.features import feature_table_markdown
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.stages.features import feature_sessions
from alphatwin_pipelines.tables import CLEANED, FACTORS, FEATURES, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource


@dg.asset(
    name=FEATURES, deps=[CLEANED, FACTORS], group_name="features", kinds={"parquet", "talib"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"features": dg.MetadataValue.md(feature_table_markdown())},
)
def features(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Every declared feature for every symbol, computed only from data up to each session.

    A new session reads just the longest lookback before it; a backfill runs in blocks so
    memory stays bounded however long the range.
    """
    with measure() as cost:
        try:
            report = feature_sessions(storage.store(), sessions_of(context))
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for session, rows in report.rows.items():
        context.add_asset_metadata(
            {"rows": rows, "symbols_with_full_history": report.symbols_with_history[session],
             "held": bool(session in report.held), "dagster/row_count": rows},
            partition_key=session_key(session),
        )
    return dg.MaterializeResult(metadata={"lookback_sessions": report.lookback_sessions, **cost.as_metadata()})
