"""When the pipeline runs by itself: the nightly scan, the weekly optimisation, and freshness checks.

Times are New York wall-clock times (``execution_timezone``), so 22:30 stays 22:30 for the market
across daylight-saving changes while its UTC offset moves. The schedules tick on every weekday and
decide in code whether the day is a session, so a skipped holiday shows up in the UI with its name
instead of as a silent gap.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from alphatwin_pipelines.calendar import MARKET_TIMEZONE
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.schedule_calendar import closure_reason, last_due_session
from alphatwin_pipelines.tables import CLEANED, FEATURES, RAW, SCANNER
from jobs.scan import nightly_scan_job, weekly_alpha_training_job, weekly_optimisation_job

MARKET_TZ = ZoneInfo(MARKET_TIMEZONE)
NIGHTLY_SCAN_CRON = "30 22 * * 1-5"
WEEKLY_OPTIMISATION_CRON = "0 6 * * 6"
# Before the optimisation, so the week's strategies can read the new models' predictions.
WEEKLY_ALPHA_TRAINING_CRON = "0 4 * * 6"
# The nightly scan starts 22:30; a session's partitions are overdue if still missing at 23:59.
FRESHNESS_DEADLINE = dt.time(23, 59)
FRESHNESS_CRON = "0 0,7 * * *"
FRESHNESS_CHECK = "session_freshness"
FRESHNESS_ASSETS = [RAW, CLEANED, FEATURES, SCANNER]


@dg.schedule(
    cron_schedule=NIGHTLY_SCAN_CRON,
    execution_timezone=MARKET_TIMEZONE,
    job=nightly_scan_job,
    description="Scan the session that closed today, after the close data has settled; skips NYSE holidays.",
)
def nightly_scan_schedule(context: dg.ScheduleEvaluationContext):
    session = context.scheduled_execution_time.astimezone(MARKET_TZ).date()
    reason = closure_reason(session)
    if reason is not None:
        return dg.SkipReason(f"no scan: {reason}")
    key = session.isoformat()
    # The run key is the session: a re-evaluated tick (daemon restart, manual re-run) never launches twice.
    return dg.RunRequest(run_key=key, partition_key=key, tags={"alphatwin/trigger": "nightly_scan_schedule"})


@dg.schedule(
    cron_schedule=WEEKLY_OPTIMISATION_CRON,
    execution_timezone=MARKET_TIMEZONE,
    job=weekly_optimisation_job,
    description="Re-optimise, validate and re-allocate on Saturday morning, after the week's last scan.",
)
def weekly_optimisation_schedule(context: dg.ScheduleEvaluationContext):
    iso = context.scheduled_execution_time.astimezone(MARKET_TZ).isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    return dg.RunRequest(run_key=week, tags={"alphatwin/trigger": "weekly_optimisation_schedule",
                                             "alphatwin/week": week})


@dg.schedule(
    cron_schedule=WEEKLY_ALPHA_TRAINING_CRON,
    execution_timezone=MARKET_TIMEZONE,
    job=weekly_alpha_training_job,
    description="Retrain the alpha models on Saturday morning, on the labels known after the week's last session.",
)
def weekly_alpha_training_schedule(context: dg.ScheduleEvaluationContext):
    iso = context.scheduled_execution_time.astimezone(MARKET_TZ).isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    return dg.RunRequest(run_key=week, tags={"alphatwin/trigger": "weekly_alpha_training_schedule", "alphatwin/week": week})


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(FRESHNESS_CHECK, asset=asset, description=f"{asset} holds the latest due session "
                             f"(due at {FRESHNESS_DEADLINE:%H:%M} New York on each session day)")
           for asset in FRESHNESS_ASSETS],
    can_subset=True,
    name="daily_tables_freshness",
)
def daily_tables_freshness(context: dg.AssetCheckExecutionContext):
    """Each daily table has a materialisation of the latest session that is due.

    Not 1.13's ``FreshnessPolicy.cron`` (it only compares the last materialisation time with the
    deadline, so every holiday would fail): the due session comes from the XNYS calendar that also
    defines the partitions, so a holiday expects the session before it, a due session is always an
    existing partition (it opened before the deadline), and a failure names the session to re-run.
    """
    now = dt.datetime.now(MARKET_TZ)
    due = session_key(last_due_session(now, FRESHNESS_DEADLINE))
    for check_key in context.selected_asset_check_keys:
        found = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=[due]), limit=1).records
        latest = context.instance.fetch_materializations(check_key.asset_key, limit=1).records
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=FRESHNESS_CHECK,
            passed=bool(found),
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"session {due} materialised" if found else f"session {due} was due by "
                         f"{FRESHNESS_DEADLINE:%H:%M} New York and is missing: run nightly_scan_job for {due}"),
            metadata={"due_session": due, "checked_at": now.isoformat(timespec="seconds"),
                      "last_materialised_partition": latest[0].partition_key if latest else "never materialised"},
        )


freshness_check_job = dg.define_asset_job(
    "freshness_check_job", selection=dg.AssetSelection.checks(daily_tables_freshness),
    description="Evaluate the daily tables' freshness checks.",
)


@dg.schedule(cron_schedule=FRESHNESS_CRON, execution_timezone=MARKET_TIMEZONE, job=freshness_check_job,
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="After the nightly deadline and again in the morning, flag daily tables that missed a session.")
def freshness_schedule(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=context.scheduled_execution_time.astimezone(MARKET_TZ).isoformat(timespec="minutes"))
