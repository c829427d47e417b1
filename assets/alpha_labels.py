"""Alpha labels: forward returns over 1, 5 and 20 sessions, partitioned by when they become known."""

import dagster as dg

from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.profiling import measure
from alphatwin_pipelines.tables import ALPHA_LABELS, CLEANED, FACTORS, MissingUpstreamError
from assets.partitions import nyse_sessions, sessions_of
from assets.resources import StorageResource

CHECK_KNOWN_AT_PARTITION = "labels_known_at_their_partition"


@dg.asset(
    name=ALPHA_LABELS, deps=[CLEANED, FACTORS], group_name="alpha", kinds={"parquet"},
    partitions_def=nyse_sessions, backfill_policy=dg.BackfillPolicy.single_run(),
    description="Forward returns (next-open entry, exit at the open h sessions later) for h in 1, 5, 20. Partition s "
                "holds the labels that become known at s (available == s), so reading up to s is point in time.",
    check_specs=[dg.AssetCheckSpec(CHECK_KNOWN_AT_PARTITION, asset=ALPHA_LABELS, blocking=True,
                                   description="Every label sits in the partition of its availability session, "
                                               "which is 1 + horizon sessions after its decision session.")],
)
def alpha_labels(context: dg.AssetExecutionContext, storage: StorageResource):
    from alphatwin_pipelines.alpha.dataset import session_ordinals
    from alphatwin_pipelines.stages.alpha_labels import label_sessions
    from alphatwin_pipelines.tables import ALPHA_LABELS as TABLE

    store, sessions = storage.store(), sessions_of(context)
    with measure() as cost:
        try:
            report = label_sessions(store, sessions)
        except MissingUpstreamError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for session, rows in report.rows.items():
        context.add_asset_metadata({"rows": rows, "dagster/row_count": rows}, partition_key=session_key(session))
    yield dg.MaterializeResult(metadata={"horizons": list(report.horizons), **cost.as_metadata()})
    written = store.read_partitions(TABLE, sessions[0], sessions[-1], columns=["date", "horizon", "available"])
    span = session_ordinals(written["available"]) - session_ordinals(written["date"]) if len(written) else []
    wrong = int(((span != 1 + written["horizon"].to_numpy()) if len(written) else []).sum())
    yield dg.AssetCheckResult(check_name=CHECK_KNOWN_AT_PARTITION, passed=wrong == 0,
                              metadata={"labels": len(written), "misplaced": wrong})
