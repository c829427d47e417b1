"""Partition definitions shared by assets, checks, schedules and sensors.

One partition per NYSE session: weekends, holidays and special closures (9/11, Sandy, state
funerals) are not partitions at all, so a backfill never asks a provider for a closed day.
``ALPHATWIN_START`` is read when the code location loads, because Dagster needs the
partition set before any run exists.
"""

import os

import dagster as dg

from alphatwin_pipelines.calendar import DEFAULT_PARTITION_START, last_session, non_session_weekdays, sessions_between
from alphatwin_pipelines.partition_keys import KEY_FORMAT

PARTITION_START = os.environ.get("ALPHATWIN_START") or DEFAULT_PARTITION_START

nyse_sessions = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    fmt=KEY_FORMAT,
    start=PARTITION_START,
    timezone="America/New_York",
    # The current session is a partition as soon as it starts, so the nightly run can build it.
    end_offset=1,
    exclusions=non_session_weekdays(PARTITION_START, last_session()),
)


def sessions_of(context):
    """The NYSE sessions of the partition key range a run (or an asset check in it) covers."""
    keys = context.op_execution_context.partition_key_range
    return sessions_between(keys.start, keys.end)
