"""NYSE sessions, from exchange_calendars' XNYS calendar.

Partitions, the synthetic market and the quality rules all ask this module which dates are
sessions, so they can never disagree about a holiday.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd

#: The earliest session any part of the project reasons about. The synthetic market's
#: random walks start here, so its bars do not depend on the requested range.
CALENDAR_ORIGIN = "1990-01-02"
DEFAULT_PARTITION_START = "2000-01-03"
EXCHANGE = "XNYS"
MARKET_TIMEZONE = "America/New_York"


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xcals

    return xcals.get_calendar(EXCHANGE, start=CALENDAR_ORIGIN)


@lru_cache(maxsize=1)
def all_sessions() -> pd.DatetimeIndex:
    """Every XNYS session from the origin to the calendar's horizon (about a year ahead)."""
    return pd.DatetimeIndex(_calendar().sessions.tz_localize(None), name="date").astype(
        "datetime64[ns]"
    )


def sessions_between(start, end) -> pd.DatetimeIndex:
    """Sessions with start <= date <= end (both inclusive)."""
    sessions = all_sessions()
    lo = sessions.searchsorted(pd.Timestamp(start))
    hi = sessions.searchsorted(pd.Timestamp(end), side="right")
    return sessions[lo:hi]


def is_session(dates) -> pd.Series | bool:
    """Whether each date is an XNYS session (vectorised for Series/arrays)."""
    sessions = all_sessions()
    if isinstance(dates, (str, dt.date, pd.Timestamp)):
        return pd.Timestamp(dates) in sessions
    return pd.DatetimeIndex(pd.to_datetime(dates)).normalize().isin(sessions)


def non_session_weekdays(start, end) -> list[dt.datetime]:
    """Weekdays in [start, end] that are not sessions: holidays and special closures.

    Returned as ``datetime`` objects because Dagster reads strings in partition
    ``exclusions`` as cron expressions.
    """
    weekdays = pd.bdate_range(pd.Timestamp(start), pd.Timestamp(end))
    closed = weekdays[~weekdays.isin(all_sessions())]
    return [d.to_pydatetime() for d in closed]


def previous_sessions(date, count: int, sessions: pd.DatetimeIndex | None = None) -> pd.DatetimeIndex:
    """The ``count`` sessions strictly before ``date`` (for rules and features that need history),
    taken from ``sessions`` (default: every calendar session)."""
    sessions = all_sessions() if sessions is None else sessions
    idx = sessions.searchsorted(pd.Timestamp(date))
    return sessions[max(0, idx - count) : idx]


@lru_cache(maxsize=1)
def _opens() -> pd.DatetimeIndex:
    """Each session's opening instant (UTC), aligned with ``all_sessions()``."""
    return pd.DatetimeIndex(_calendar().opens)


def session_opens(start, end) -> pd.Series:
    """The opening instant, in New York time, of each session with start <= date <= end."""
    sessions = all_sessions()
    lo, hi = sessions.searchsorted(pd.Timestamp(start)), sessions.searchsorted(pd.Timestamp(end), side="right")
    return pd.Series(_opens()[lo:hi].tz_convert(MARKET_TIMEZONE), index=sessions[lo:hi])


def regular_open() -> dt.time:
    """The exchange's current regular opening time, New York wall clock."""
    return _calendar().open_times[-1][1]


def last_started_session(now: dt.datetime) -> pd.Timestamp | None:
    """The latest session that has opened by ``now`` (a naive ``now`` is New York time).

    From the open on, a session's bars can exist; before it, asking a provider for them is asking
    for a day that has not traded. ``None`` before the calendar's first session.
    """
    now = pd.Timestamp(now)
    now = now.tz_localize(MARKET_TIMEZONE) if now.tz is None else now
    idx = _opens().searchsorted(now, side="right")
    return all_sessions()[idx - 1] if idx else None


def lookback_start(first, count: int, sessions: pd.DatetimeIndex | None = None) -> pd.Timestamp:
    """The first session of the window that adds ``count`` sessions of history before ``first``
    (fewer near the start of ``sessions``; ``first`` itself when none precedes it)."""
    before = previous_sessions(first, count, sessions)
    return before[0] if len(before) else pd.Timestamp(first)


def last_session() -> pd.Timestamp:
    """The calendar's last known session (its horizon)."""
    return all_sessions()[-1]
