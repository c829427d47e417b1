"""Why the exchange is shut on a given weekday, for schedules that skip closed days.

A skipped tick is only useful to an operator if it says *why* nothing ran: "Thanksgiving" is
reassuring, a bare "not a session" on a Thursday is a question. Names come from the same XNYS
calendar that defines the sessions, so the reason can never disagree with the partition set.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from alphatwin_pipelines.calendar import _calendar, is_session, last_session, previous_sessions


def closure_reason(day: dt.date | str | pd.Timestamp) -> str | None:
    """``None`` when ``day`` is an NYSE session, else a sentence naming the holiday or closure."""
    day = pd.Timestamp(day).normalize()
    if day.tz is not None:
        day = day.tz_localize(None)
    label = f"{day:%Y-%m-%d} ({day:%A})"
    if is_session(day):
        return None
    if day.day_of_week >= 5:
        return f"{label} is a weekend: the NYSE is closed"
    if day > last_session():
        return (f"{label} is beyond the XNYS calendar's horizon ({last_session():%Y-%m-%d}); "
                "upgrade exchange_calendars to extend it")
    calendar = _calendar()
    named = calendar.regular_holidays.holidays(day, day, return_name=True)
    if len(named):
        return f"{label} is an NYSE holiday: {named.iloc[0]}"
    if day in pd.DatetimeIndex(calendar.adhoc_holidays):
        return f"{label} is an unscheduled NYSE closure (e.g. a national day of mourning or a storm)"
    return f"{label} is not an NYSE session"


def last_due_session(now: dt.datetime, deadline: dt.time) -> pd.Timestamp:
    """The latest session whose data is due by ``now``: today's once ``deadline`` (wall-clock time
    in ``now``'s timezone) has passed, else the previous session's. Holidays and weekends are never
    due, so a check run on Thanksgiving night expects Wednesday's data, not Thursday's or Friday's."""
    today = pd.Timestamp(now.date())
    if now.time() >= deadline and is_session(today):
        return today
    return previous_sessions(today, 1)[-1]
