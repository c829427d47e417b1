"""When the per-symbol history index is rebuilt: every Saturday, and after each backfill of a daily table it indexes.

A nightly run adds one session, which reads by symbol take from its own file until the weekly
compaction; a backfill rewrites many sessions at once, so it is followed by a compaction.
"""

import dagster as dg

from alphatwin_pipelines.calendar import MARKET_TIMEZONE, sessions_between
from alphatwin_pipelines.tables import SYMBOL_INDEXED
from jobs.scan import symbol_index_job

# Saturday, after the week's last scan and before the alpha training (04:00) reads long histories.
SYMBOL_INDEX_CRON = "0 2 * * 6"
#: A run covering at least this many sessions is a backfill worth compacting after.
BACKFILL_SESSIONS = 20
_RANGE_START, _RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dg.schedule(cron_schedule=SYMBOL_INDEX_CRON, execution_timezone=MARKET_TIMEZONE, job=symbol_index_job,
             description="Rebuild the per-symbol history index of the years whose session files changed.")
def weekly_symbol_index_schedule(context: dg.ScheduleEvaluationContext):
    iso = context.scheduled_execution_time.isocalendar()
    return dg.RunRequest(run_key=f"{iso.year}-W{iso.week:02d}", tags={"alphatwin/trigger": "weekly_symbol_index_schedule"})


def backfill_request(run: dg.DagsterRun) -> dg.RunRequest | None:
    """A compaction run after ``run`` when it rewrote a range of an indexed table, else None."""
    start, end = run.tags.get(_RANGE_START), run.tags.get(_RANGE_END)
    indexed = {dg.AssetKey(table) for table in SYMBOL_INDEXED}
    if not start or not end or not indexed & set(run.asset_selection or ()):
        return None
    if len(sessions_between(start, end)) < BACKFILL_SESSIONS:
        return None
    return dg.RunRequest(run_key=run.run_id, tags={"alphatwin/trigger": "symbol_index_after_backfill",
                                                   "alphatwin/after_run": run.run_id})


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, request_job=symbol_index_job,
                      name="symbol_index_after_backfill", minimum_interval_seconds=60,
                      default_status=dg.DefaultSensorStatus.RUNNING,
                      description=f"After a successful backfill of {', '.join(SYMBOL_INDEXED)} over at least "
                                  f"{BACKFILL_SESSIONS} sessions, bring the per-symbol history index up to date.")
def symbol_index_after_backfill(context: dg.RunStatusSensorContext):
    request = backfill_request(context.dagster_run)
    return request if request is not None else dg.SkipReason(f"run {context.dagster_run.run_id} was no backfill "
                                                             "of an indexed table")
