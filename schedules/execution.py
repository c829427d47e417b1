"""Launch ``paper_execution_job`` for each new ``portfolio_allocations`` version that passed its checks.

Cursor: the event storage id of the last materialisation decided on. A materialisation whose
run is still going (its checks may not have run yet) stops the scan until a later tick. The
allocation asset's checks (``assets/portfolio.py``, blocking) run in the materialising run, so
"passed" means: that run succeeded and recorded no failed ERROR-severity check evaluation for
``portfolio_allocations`` (with no checks defined, a successful run suffices); a failed WARN check
(a default cap the engine relaxed, or no strategy passed so the version is all cash) informs: the
weights are still valid, and an all-cash version is traded too (it closes every position). ``run_key``
derives from ``allocation_version`` alone, so a restarted sensor (lost cursor) or a re-evaluated
tick asks for the same run and Dagster launches it once.
"""

from __future__ import annotations

import dagster as dg

from alphatwin_pipelines.tables import ALLOCATIONS
from jobs.execution import EXECUTE_OP, paper_execution_job

ALLOCATIONS_KEY = dg.AssetKey(ALLOCATIONS)
SENSOR_NAME = "paper_execution_sensor"
BATCH = 100


def run_key_for(allocation_version: str) -> str:
    return f"paper-execution:{allocation_version}"


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Names of the allocation's ERROR-severity checks that failed in ``run_id``."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return sorted(e.check_name for e in evaluations if e.asset_key == ALLOCATIONS_KEY and not e.passed
                  and e.severity != dg.AssetCheckSeverity.WARN)


def _why_not_tradeable(instance, run, run_id: str, version) -> str | None:
    if not version:
        return "no allocation_version in its metadata"
    if run is not None and run.status != dg.DagsterRunStatus.SUCCESS:
        return f"its run {run_id} ended {run.status.value}"
    failed = failed_checks(instance, run_id) if run is not None else []
    return f"failed checks {failed}" if failed else None


@dg.sensor(name=SENSOR_NAME, job=paper_execution_job, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Trades each new portfolio_allocations version once its asset checks passed.")
def paper_execution_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ALLOCATIONS_KEY, after_storage_id=after), limit=BATCH, ascending=True
    ).records
    requests, cursor = [], after
    for record in records:
        run = context.instance.get_run_by_id(record.run_id) if record.run_id else None
        if run is not None and not run.is_finished:
            break
        cursor = record.storage_id
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        version = getattr(metadata.get("allocation_version"), "value", None)
        problem = _why_not_tradeable(context.instance, run, record.run_id, version)
        if problem:
            context.log.info(f"skipping materialisation {record.storage_id} of portfolio_allocations: {problem}")
            continue
        requests.append(dg.RunRequest(
            run_key=run_key_for(version),
            run_config={"ops": {EXECUTE_OP: {"config": {"allocation_version": version}}}},
            tags={"allocation_version": version},
        ))
    return dg.SensorResult(run_requests=requests, cursor=None if cursor is None else str(cursor))
