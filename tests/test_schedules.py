"""The nightly and weekly schedules and the freshness checks, evaluated the way the daemon does.

Tick times come from Dagster's own cron iterator in the schedule's execution timezone; the
expected UTC instants are written from the published offsets (EDT = UTC-4, EST = UTC-5) and the
NYSE holiday list, not from this code's output.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.errors import DagsterUnknownPartitionError
from dagster._utils.schedules import cron_string_iterator

from alphatwin_pipelines.calendar import previous_sessions, sessions_between
from alphatwin_pipelines.schedule_calendar import last_due_session
from assets import alpha_labels, alpha_predictions, cleaning, features, ingestion, quality, scanner
from assets.partitions import nyse_sessions
from assets.resources import StorageResource, default_resources
from jobs.scan import NIGHTLY_SCAN_ASSETS, nightly_scan_job, weekly_optimisation_job
from schedules.scan import (
    FRESHNESS_ASSETS, FRESHNESS_DEADLINE, daily_tables_freshness, freshness_check_job, freshness_schedule,
    nightly_scan_schedule, weekly_alpha_training_schedule, weekly_optimisation_schedule,
)

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc


def ticks(schedule: dg.ScheduleDefinition, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out = []
    for tick in cron_string_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone):
        if tick >= end:
            return out
        out.append(tick)


def evaluate(schedule: dg.ScheduleDefinition, when: dt.datetime):
    """Through ``evaluate_tick`` (as the daemon does), which also checks the partition key exists."""
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=_nightly_repository()) as context:
        return schedule.evaluate_tick(context)


@functools.cache
def _nightly_repository():
    return _definitions(jobs=[nightly_scan_job], schedules=[nightly_scan_schedule]).get_repository_def()


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_nightly_schedule_runs_weekday_evenings_in_new_york():
    assert nightly_scan_schedule.execution_timezone == "America/New_York"
    assert nightly_scan_schedule.job_name == "nightly_scan_job"
    week = ticks(nightly_scan_schedule, dt.datetime(2025, 11, 23, tzinfo=NY), dt.datetime(2025, 11, 30, tzinfo=NY))
    # Thanksgiving week: five weekday ticks at 22:30 EST (03:30 UTC the next day), holiday included.
    assert [t.astimezone(UTC) for t in week] == [utc(2025, 11, d, 3, 30) for d in (25, 26, 27, 28, 29)]


def test_thanksgiving_is_skipped_by_name_and_the_half_day_runs():
    outcomes = {}
    for tick in ticks(nightly_scan_schedule, dt.datetime(2025, 11, 23, tzinfo=NY), dt.datetime(2025, 11, 30, tzinfo=NY)):
        result = evaluate(nightly_scan_schedule, tick)
        day = tick.astimezone(NY).date().isoformat()
        outcomes[day] = result.skip_message or [(r.partition_key, r.run_key) for r in result.run_requests]
    assert "Thanksgiving" in outcomes.pop("2025-11-27")
    # Black Friday closes at 13:00 but is a session, so it is scanned like any other day.
    assert outcomes == {d: [(d, d)] for d in ("2025-11-24", "2025-11-25", "2025-11-26", "2025-11-28")}


def test_independence_day_observed_on_friday_is_skipped():
    # 4 July 2026 is a Saturday; the NYSE closes on Friday 3 July instead.
    result = evaluate(nightly_scan_schedule, dt.datetime(2026, 7, 3, 22, 30, tzinfo=NY))
    assert not result.run_requests
    assert "2026-07-03" in result.skip_message and "July 4th" in result.skip_message
    monday = evaluate(nightly_scan_schedule, dt.datetime(2026, 7, 6, 22, 30, tzinfo=NY))
    assert [r.partition_key for r in monday.run_requests] == ["2026-07-06"]


def test_an_unscheduled_closure_is_skipped_too():
    # 9 January 2025: national day of mourning for President Carter, announced weeks before.
    result = evaluate(nightly_scan_schedule, dt.datetime(2025, 1, 9, 22, 30, tzinfo=NY))
    assert "unscheduled NYSE closure" in result.skip_message


@pytest.mark.parametrize(
    ("start", "end", "expected_utc"),
    [
        # DST ends Sunday 2 November 2025: Friday is EDT (UTC-4), Monday EST (UTC-5).
        ((2025, 10, 31), (2025, 11, 4), [utc(2025, 11, 1, 2, 30), utc(2025, 11, 4, 3, 30)]),
        # DST starts Sunday 8 March 2026: Friday is EST (UTC-5), Monday EDT (UTC-4).
        ((2026, 3, 6), (2026, 3, 10), [utc(2026, 3, 7, 3, 30), utc(2026, 3, 10, 2, 30)]),
    ],
)
def test_daylight_saving_change_keeps_22_30_local(start, end, expected_utc):
    found = ticks(nightly_scan_schedule, dt.datetime(*start, tzinfo=NY), dt.datetime(*end, tzinfo=NY))
    assert [t.astimezone(UTC) for t in found] == expected_utc
    assert {(t.astimezone(NY).hour, t.astimezone(NY).minute) for t in found} == {(22, 30)}
    # The partition is the New York session date, not the UTC date the tick falls on.
    first = evaluate(nightly_scan_schedule, found[0])
    assert [r.partition_key for r in first.run_requests] == [dt.date(*start).isoformat()]


def test_re_evaluating_a_tick_requests_the_same_run_key():
    tick = dt.datetime(2025, 11, 25, 22, 30, tzinfo=NY)
    first, again = evaluate(nightly_scan_schedule, tick), evaluate(nightly_scan_schedule, tick)
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in again.run_requests] == ["2025-11-25"]
    next_day = evaluate(nightly_scan_schedule, tick + dt.timedelta(days=1))
    assert [r.run_key for r in next_day.run_requests] == ["2025-11-26"]


def test_weekly_optimisation_runs_saturday_morning_once_per_week():
    assert weekly_optimisation_schedule.job_name == "weekly_optimisation_job"
    found = ticks(weekly_optimisation_schedule, dt.datetime(2026, 2, 28, tzinfo=NY), dt.datetime(2026, 3, 15, tzinfo=NY))
    # 28 Feb is EST (11:00 UTC); 7 and 14 March straddle the 8 March change (EST, then EDT at 10:00 UTC).
    assert [t.astimezone(UTC) for t in found] == [utc(2026, 2, 28, 11), utc(2026, 3, 7, 11), utc(2026, 3, 14, 10)]
    # Its assets come from other modules, so the schedule function is invoked directly.
    keys = []
    for tick in found:
        with dg.build_schedule_context(scheduled_execution_time=tick) as context:
            keys.append(weekly_optimisation_schedule(context).run_key)
    assert keys == ["2026-W09", "2026-W10", "2026-W11"]


def test_weekly_alpha_training_runs_before_the_optimisation_on_the_same_saturday():
    assert weekly_alpha_training_schedule.job_name == "weekly_alpha_training_job"
    window = dt.datetime(2026, 2, 28, tzinfo=NY), dt.datetime(2026, 3, 15, tzinfo=NY)
    training, optimisation = ticks(weekly_alpha_training_schedule, *window), ticks(weekly_optimisation_schedule, *window)
    assert [t.date() for t in training] == [t.date() for t in optimisation]
    assert all(a < b for a, b in zip(training, optimisation))
    keys = []
    for tick in training:
        with dg.build_schedule_context(scheduled_execution_time=tick) as context:
            keys.append(weekly_alpha_training_schedule(context).run_key)
    assert keys == ["2026-W09", "2026-W10", "2026-W11"]


def _definitions(resources=None, **extra) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([ingestion, quality, cleaning, features, scanner, alpha_labels, alpha_predictions]),
        resources={**default_resources(), **(resources or {})},
        **extra,
    )


def test_nightly_job_selects_the_scan_chain_on_session_partitions():
    defs = _definitions(jobs=[nightly_scan_job], schedules=[nightly_scan_schedule])
    job = defs.resolve_job_def("nightly_scan_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(NIGHTLY_SCAN_ASSETS)
    assert job.partitions_def.get_partition_key_range_for_time_window  # session-partitioned
    assert "2025-11-27" not in job.partitions_def.get_partition_keys(current_time=dt.datetime(2025, 12, 1))
    assert weekly_optimisation_job.name == "weekly_optimisation_job"


@pytest.mark.parametrize(
    ("now", "due"),
    [
        ((2025, 11, 25, 23, 58), "2025-11-24"),  # Tuesday before the deadline: Monday's is the latest due
        ((2025, 11, 25, 23, 59), "2025-11-25"),
        ((2025, 11, 27, 23, 59, 30), "2025-11-26"),  # Thanksgiving night: Wednesday, never Thursday or Friday
        ((2025, 11, 28, 7, 0), "2025-11-26"),
        ((2025, 11, 28, 23, 59, 30), "2025-11-28"),  # the half day is a session
        ((2025, 12, 1, 7, 0), "2025-11-28"),  # Monday morning: Friday's
        ((2026, 7, 3, 23, 59, 30), "2026-07-02"),  # Independence Day observed on Friday
    ],
)
def test_the_due_session_skips_holidays_and_weekends(now, due):
    assert f"{last_due_session(dt.datetime(*now, tzinfo=NY), FRESHNESS_DEADLINE):%Y-%m-%d}" == due


def test_freshness_checks_pass_only_for_tables_holding_the_due_session(tmp_path):
    defs = _definitions(asset_checks=[daily_tables_freshness], jobs=[freshness_check_job],
                        schedules=[freshness_schedule], resources={"storage": StorageResource(data_dir=str(tmp_path))})
    due = f"{last_due_session(dt.datetime.now(NY), FRESHNESS_DEADLINE):%Y-%m-%d}"
    before = f"{previous_sessions(due, 1)[-1]:%Y-%m-%d}"
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="raw_ohlcv", partition=due))
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="cleaned_ohlcv", partition=before))
        result = defs.resolve_job_def("freshness_check_job").execute_in_process(instance=instance)
    outcome = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(outcome) == set(FRESHNESS_ASSETS)
    assert outcome["raw_ohlcv"].passed
    assert not outcome["cleaned_ohlcv"].passed
    assert outcome["cleaned_ohlcv"].metadata["last_materialised_partition"].value == before
    assert f"session {due} was due" in outcome["cleaned_ohlcv"].description
    assert not outcome["features"].passed
    assert outcome["features"].metadata["last_materialised_partition"].value == "never materialised"


def test_every_nightly_tick_of_a_year_requests_an_existing_session_partition():
    """``evaluate_tick`` validates the key against the partitions as of the tick, so a session that
    were not yet a partition at 22:30 would raise here instead of failing in the daemon."""
    requested, skipped = [], []
    for tick in ticks(nightly_scan_schedule, dt.datetime(2026, 1, 1, tzinfo=NY), dt.datetime(2027, 1, 1, tzinfo=NY)):
        result = evaluate(nightly_scan_schedule, tick)
        (skipped if result.skip_message else requested).append(tick.astimezone(NY).date())
        assert [r.partition_key for r in result.run_requests] == ([] if result.skip_message else [f"{tick:%Y-%m-%d}"])
    sessions = sessions_between("2026-01-01", "2026-12-31")
    assert [f"{d:%Y-%m-%d}" for d in requested] == [f"{d:%Y-%m-%d}" for d in sessions]
    assert len(skipped) == 261 - len(requested) >= 9  # weekday holidays


def test_a_session_cannot_be_requested_before_its_open():
    @dg.schedule(cron_schedule="0 8 * * 1-5", execution_timezone="America/New_York", job=nightly_scan_job)
    def morning(context):
        return dg.RunRequest(partition_key=f"{context.scheduled_execution_time:%Y-%m-%d}")

    repository = _definitions(jobs=[nightly_scan_job], schedules=[morning]).get_repository_def()
    for when, allowed in ((dt.datetime(2026, 11, 27, 9, 29, tzinfo=NY), False),
                          (dt.datetime(2026, 11, 27, 9, 30, tzinfo=NY), True)):
        with dg.build_schedule_context(scheduled_execution_time=when, repository_def=repository) as context:
            if allowed:
                assert [r.partition_key for r in morning.evaluate_tick(context).run_requests] == ["2026-11-27"]
            else:
                with pytest.raises(DagsterUnknownPartitionError, match="2026-11-27"):
                    morning.evaluate_tick(context)


def test_at_each_freshness_tick_the_due_session_is_the_last_partition():
    """The check never asks for a session that is not a partition yet, nor forgets the last one."""
    for tick in ticks(freshness_schedule, dt.datetime(2026, 1, 1, tzinfo=NY), dt.datetime(2027, 1, 1, tzinfo=NY)):
        with partition_loading_context(tick):
            last = nyse_sessions.get_last_partition_key()
        assert f"{last_due_session(tick.astimezone(NY), FRESHNESS_DEADLINE):%Y-%m-%d}" == last, tick
