"""Session partitions: a session is a partition from its open on, never earlier, holidays included.

Expected keys come from exchange_calendars' XNYS opening times (``last_started_session``), not from
the partitions definition; the issue-14 examples are written from the published NYSE holidays.
The definitions are checked as the webserver and daemon see them: rebuilt from their snapshot.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.snap.snap import TimeWindowPartitionsSnap

from alphatwin_pipelines.calendar import (
    DEFAULT_PARTITION_START, MARKET_TIMEZONE, all_sessions, last_session, last_started_session, non_session_weekdays,
    regular_open, session_opens,
)
from assets.partitions import nyse_sessions, session_partitions

NY = ZoneInfo(MARKET_TIMEZONE)
WALK_YEAR = 2026
# Midnight, the last second before the open, the open, the 13:00 early close, the close, the nightly
# scan, the last second of the day.
TIMES = [dt.time(0), dt.time(9, 29, 59), dt.time(9, 30), dt.time(13), dt.time(16), dt.time(22, 30), dt.time(23, 59, 59)]


def as_served(partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.TimeWindowPartitionsDefinition:
    """The definition the UI, backfills and the daemon use: rebuilt from the code location's snapshot."""
    served = TimeWindowPartitionsSnap.from_def(partitions_def).get_partitions_definition()
    assert served == partitions_def
    return served


def ny(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def key(day) -> str:
    return f"{pd.Timestamp(day):%Y-%m-%d}"


@pytest.mark.parametrize(
    ("now", "last_keys"),
    [
        # Christmas 2026 is a Friday; Thursday 24th closed at 13:00; Monday 28th has not opened.
        (ny(2026, 12, 25, 12), ["2026-12-22", "2026-12-23", "2026-12-24"]),
        # Thanksgiving 2026: Wednesday is the last session, Friday has not opened.
        (ny(2026, 11, 26, 12), ["2026-11-23", "2026-11-24", "2026-11-25"]),
        (ny(2026, 11, 27, 9, 29), ["2026-11-23", "2026-11-24", "2026-11-25"]),
        (ny(2026, 11, 27, 13, 30), ["2026-11-24", "2026-11-25", "2026-11-27"]),  # after the early close
        (ny(2026, 12, 7, 9, 29, 59), ["2026-12-02", "2026-12-03", "2026-12-04"]),  # Monday before the open
        (ny(2026, 12, 7, 9, 30), ["2026-12-03", "2026-12-04", "2026-12-07"]),
    ],
)
def test_issue_examples_end_at_the_last_opened_session(now, last_keys):
    keys = as_served(session_partitions("2026-11-02")).get_partition_keys(current_time=now)
    assert keys[-3:] == last_keys
    with partition_loading_context(now):  # the code location's own definition, from ALPHATWIN_START
        assert as_served(nyse_sessions).get_last_partition_key() == last_keys[-1]


def test_a_year_of_days_ends_at_the_last_started_session():
    """Every day of a year at several times of day: the last key is the calendar's last started
    session, and the next session is not a partition yet (the UI would list it as missing)."""
    served = as_served(session_partitions(f"{WALK_YEAR - 1}-12-01"))
    sessions = all_sessions()
    wrong, holidays_seen, weekends_seen = [], 0, 0
    for day in pd.date_range(f"{WALK_YEAR}-01-01", f"{WALK_YEAR}-12-31"):
        holidays_seen += day.day_of_week < 5 and day not in sessions
        weekends_seen += day.day_of_week >= 5
        for time in TIMES:
            now = dt.datetime.combine(day.date(), time, tzinfo=NY)
            expected = last_started_session(now)
            upcoming = sessions[sessions.searchsorted(expected, side="right")]
            with partition_loading_context(now):
                found = (served.get_last_partition_key(), served.has_partition_key(key(upcoming)))
            if found != (key(expected), False):
                wrong.append((now.isoformat(), found, key(expected)))
    assert not wrong, wrong[:10]
    assert holidays_seen >= 9 and weekends_seen >= 104


def test_on_every_holiday_the_partitions_are_exactly_the_sessions_so_far():
    start = f"{WALK_YEAR - 1}-12-01"
    served = as_served(session_partitions(start))
    holidays = [d for d in non_session_weekdays(f"{WALK_YEAR}-01-01", f"{WALK_YEAR}-12-31")]
    assert len(holidays) >= 9
    for holiday in holidays:
        now = dt.datetime.combine(holiday.date(), dt.time(12), tzinfo=NY)
        expected = [key(d) for d in all_sessions() if pd.Timestamp(start) <= d <= last_started_session(now)]
        assert served.get_partition_keys(current_time=now) == expected, holiday


def test_holidays_and_weekends_are_never_partitions():
    later = ny(WALK_YEAR + 1, 1, 31)
    with partition_loading_context(later):
        for holiday in non_session_weekdays(f"{WALK_YEAR}-01-01", f"{WALK_YEAR}-12-31"):
            assert not nyse_sessions.has_partition_key(key(holiday))
        assert not nyse_sessions.has_partition_key("2026-11-28")  # a Saturday
        assert nyse_sessions.has_partition_key("2026-11-27")


def test_every_partition_session_opens_at_the_regular_open():
    # The partition windows are cron ticks at the regular open; a late-open session would need more.
    opens = session_opens(DEFAULT_PARTITION_START, last_session())
    assert set(opens.dt.time) == {regular_open()}


def test_last_started_session():
    assert last_started_session(ny(2026, 12, 5, 12)) == pd.Timestamp("2026-12-04")  # Saturday
    assert last_started_session(dt.datetime(2026, 12, 7, 9, 30)) == pd.Timestamp("2026-12-07")  # naive = New York
    assert last_started_session(dt.datetime(2026, 12, 7, 14, 29, tzinfo=dt.timezone.utc)) == pd.Timestamp("2026-12-04")
    assert last_started_session(ny(1980, 1, 2)) is None


def test_upstream_issue_33551_is_still_open():
    """A canary: when this fails, Dagster has fixed https://github.com/dagster-io/dagster/issues/33551
    and assets/partitions.py can go back to midnight windows with ``end_offset=1``."""
    natural = dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5", fmt="%Y-%m-%d", start="2026-11-02", timezone=MARKET_TIMEZONE, end_offset=1,
        exclusions=non_session_weekdays("2026-11-02", last_session()))
    assert natural.get_partition_keys(current_time=ny(2026, 11, 26, 12))[-1] == "2026-11-27"
