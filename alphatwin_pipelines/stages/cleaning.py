"""Corporate actions and cleaning: validated partitions in, event and cleaned partitions out.

Adjusted prices are not frozen into the cleaned files. Backward adjustment as of the latest
session changes every earlier price of a symbol whenever it splits or pays a dividend, so
stored adjusted history would be stale the day after. Instead the events table is kept per
session and ``tables.read_adjusted`` applies it when reading: a new session costs only that session,
a new event costs only that symbol's factors, and any ``as_of`` view (point in time) is exact.

A session the quality gate holds back (``quality.gate``) publishes nothing here: no events,
no cleaned rows (its partition is written empty, so later sessions still find it), and no
forward-filled bars invented in its place. Its validated rows are left out of the history of
later sessions as well, so nothing downstream rests on a session nobody has trusted yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.adjustment import EVENT_COLUMNS, corporate_actions
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.cleaning import clean
from alphatwin_pipelines.corrections import apply_corrections, load_corrections
from alphatwin_pipelines.quality.gate import held_sessions
from alphatwin_pipelines.partition_keys import session_key
from alphatwin_pipelines.schema import BAR_COLUMNS
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, FACTORS, VALIDATED, read_lookback, read_range, require_partitions

CLEANED_COLUMNS = (*BAR_COLUMNS, "flags", "filled")


@dataclass
class SessionEvents:
    session: pd.Timestamp
    events: pd.DataFrame
    held: bool = False

    @property
    def key(self) -> str:
        return session_key(self.session)


@dataclass
class EventsReport:
    per_session: list[SessionEvents]
    corrections: pd.DataFrame  # the corrections dated in the run, with provider value and ``applied``
    corrections_version: str | None  # None: no corrections file


def build_events(store: TableStore, sessions: pd.DatetimeIndex) -> EventsReport:
    """Replace each session's corporate-action events (with their backward factors).

    The user's corrections (``alphatwin_pipelines.corrections``) override the provider's events
    here, so adding one and re-materialising its ex-date session releases an event that
    validation quarantined for its value; each corrected event names the corrections version.
    """
    require_partitions(store, VALIDATED, sessions)
    bars = read_range(store, VALIDATED, sessions, columns=list(BAR_COLUMNS))
    # The previous close of a dividend is the symbol's last bar, which a gap may push back.
    previous = read_lookback(store, VALIDATED, sessions[0], GAP_REPORT_SESSIONS, columns=list(BAR_COLUMNS))
    corrections = load_corrections(store.data_dir)
    in_run, applied = apply_corrections(bars, corrections)
    frame, held = _without_held(store, pd.concat([previous, in_run], ignore_index=True) if len(previous) else in_run, sessions)
    events = corporate_actions(frame)
    events = events[events["date"].isin(sessions)][list(EVENT_COLUMNS)]
    store.write_sessions(FACTORS, events, sessions)
    by_day = dict(tuple(events.groupby("date", sort=False)))
    out = [SessionEvents(s, by_day.get(s, events.iloc[0:0]).reset_index(drop=True), s in held) for s in sessions]
    return EventsReport(out, applied, corrections.version)


def _without_held(store: TableStore, frame: pd.DataFrame, sessions: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """``frame`` without the rows of held sessions, and the held sessions from its first day to the last of ``sessions``."""
    start = frame["date"].min() if len(frame) else sessions[0]
    held = held_sessions(store, start, sessions[-1])
    return (frame[~frame["date"].isin(held)] if len(held) else frame), held


#: How far back a missing symbol is still reported as a gap (beyond: it stopped trading).
GAP_REPORT_SESSIONS = 21


@dataclass
class CleanReport:
    sessions: pd.DatetimeIndex
    rows: dict[pd.Timestamp, int]
    filled: dict[pd.Timestamp, int]
    gaps: pd.DataFrame  # symbol, gap_start, gap_end, sessions, reason (ffill | gap | halt)
    held: pd.DatetimeIndex  # sessions of the run the quality gate holds back (written empty)


def clean_sessions(store: TableStore, sessions: pd.DatetimeIndex, *, max_ffill: int = 3) -> CleanReport:
    """Apply the point-in-time missing-value policy and replace each session's cleaned partition.

    The policy itself (fill a symbol missing at ``t`` only from its last real bar, at most
    ``max_ffill`` sessions old; report longer gaps; drop halts) lives in
    ``alphatwin_pipelines.cleaning.clean``, so there is one policy in the code base. Being
    one-sided, it makes each partition depend only on sessions up to its own, never on
    which run wrote it. This function adds I/O only: ``GAP_REPORT_SESSIONS`` of validated
    history, so that last bars and previous closes from before the run are known.
    """
    require_partitions(store, VALIDATED, sessions)
    bars = read_range(store, VALIDATED, sessions)
    history = read_lookback(store, VALIDATED, sessions[0], GAP_REPORT_SESSIONS)
    frame = (pd.concat([history, bars], ignore_index=True) if len(history) else bars).drop(columns=["raw_row"], errors="ignore")
    calendar = sessions_between(frame["date"].min() if len(frame) else sessions[0], sessions[-1])
    frame, held = _without_held(store, frame, sessions)
    # Held sessions stay in the calendar (a bar before one is a session older) but get no fills.
    cleaned, gaps = clean(frame, sessions.difference(held), calendar=calendar, max_ffill=max_ffill,
                          report_window=GAP_REPORT_SESSIONS)
    cleaned = cleaned[list(CLEANED_COLUMNS)]
    rows = store.write_sessions(CLEANED, cleaned, sessions)
    fills = cleaned[cleaned["filled"]].groupby("date").size()
    filled = {s: int(fills.get(s, 0)) for s in sessions}
    return CleanReport(sessions, rows, filled, gaps, held[held.isin(sessions)])
