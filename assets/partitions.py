"""Partition definitions shared by assets, checks, schedules and sensors.

One partition per NYSE session: weekends, holidays and special closures (9/11, Sandy, state
funerals) are not partitions at all, so a backfill never asks a provider for a closed day.
``ALPHATWIN_START`` is read when the code location loads, because Dagster needs the
partition set before any run exists.

A session becomes a partition when it opens (09:30 New York), never earlier: at any time t the
set ends at ``calendar.last_started_session(t)``, on holidays too.

Why the windows look odd: the natural definition (one window per weekday from midnight,
``end_offset=1``, holidays in ``exclusions``) hits Dagster issue 33551, "wrong partitions when
end_offset>0, with exclusions given" (https://github.com/dagster-io/dagster/issues/33551): on a
holiday the window holding "now" is excluded, so the offset reaches the *next* session (on
Christmas 2026 the last key was 2026-12-28, on Thanksgiving the Friday). So ``end_offset`` stays 0
(the last partition is the last window that has ended) and each session's window is the hour
*before* its open, [08:30, 09:30): it ends at the open, and its start dates the key. The window from
the open to the next morning is excluded by a cron exclusion, holidays by their 08:30 tick.
Overriding the end computation in a subclass would not do: the webserver and the daemon rebuild a
plain ``TimeWindowPartitionsDefinition`` from the code location's snapshot, so the UI, backfills and
"materialise missing" would still see the bug. Everything here is in the serialised fields.
When 33551 is fixed (tests/test_partitions.py has a canary), midnight windows with
``end_offset=1`` can come back.
"""

import datetime as dt
import os

import dagster as dg

from alphatwin_pipelines.calendar import (
    DEFAULT_PARTITION_START, MARKET_TIMEZONE, last_session, non_session_weekdays, regular_open, sessions_between,
)
from alphatwin_pipelines.partition_keys import KEY_FORMAT

PARTITION_START = os.environ.get("ALPHATWIN_START") or DEFAULT_PARTITION_START


def session_partitions(start: str) -> dg.TimeWindowPartitionsDefinition:
    """Sessions from ``start``, each a partition from its open on (see the module docstring)."""
    open_ = regular_open()
    window_start = dt.timedelta(hours=open_.hour - 1, minutes=open_.minute)
    return dg.TimeWindowPartitionsDefinition(
        # Two ticks per weekday, an hour apart: the hour before the open, and the open.
        cron_schedule=f"{open_.minute} {open_.hour - 1},{open_.hour} * * 1-5",
        fmt=KEY_FORMAT,
        start=start,
        timezone=MARKET_TIMEZONE,
        end_offset=0,
        exclusions=[
            f"{open_.minute} {open_.hour} * * *",  # the open -> next morning window is no partition
            *(day + window_start for day in non_session_weekdays(start, last_session())),
        ],
    )


nyse_sessions = session_partitions(PARTITION_START)


def sessions_of(context):
    """The NYSE sessions of the partition key range a run (or an asset check in it) covers."""
    keys = context.op_execution_context.partition_key_range
    return sessions_between(keys.start, keys.end)
