"""Corporate actions and cleaning: validated partitions in, event and cleaned partitions out.

Adjusted prices are not frozen into the cleaned files. Backward adjustment as of the latest
session changes every earlier price of a symbol whenever it splits or pays a dividend, so
stored adjusted history would be stale the day after. Instead the events table is kept per
session and ``read_adjusted`` applies it when reading: a new session costs only that session,
a new event costs only that symbol's factors, and any ``as_of`` view (point in time) is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphatwin_pipelines.adjustment import EVENT_COLUMNS, adjust, corporate_actions
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.cleaning import FLAG_FFILL
from alphatwin_pipelines.schema import BAR_COLUMNS, frame_to_arrow
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.tables import CLEANED, FACTORS, VALIDATED, read_lookback, read_range, require_partitions

CLEANED_COLUMNS = (*BAR_COLUMNS, "flags", "filled")


@dataclass
class SessionEvents:
    session: pd.Timestamp
    events: pd.DataFrame

    @property
    def key(self) -> str:
        return f"{self.session:%Y-%m-%d}"


def build_events(store: TableStore, sessions: pd.DatetimeIndex) -> list[SessionEvents]:
    """Replace each session's corporate-action events (with their backward factors)."""
    require_partitions(store, VALIDATED, sessions)
    bars = read_range(store, VALIDATED, sessions, columns=list(BAR_COLUMNS))
    # The previous close of a dividend is the symbol's last bar, which a gap may push back.
    previous = read_lookback(store, VALIDATED, sessions[0], GAP_REPORT_SESSIONS, columns=list(BAR_COLUMNS))
    events = corporate_actions(pd.concat([previous, bars], ignore_index=True) if len(previous) else bars)
    by_day = dict(tuple(events.groupby("date", sort=False)))
    out = []
    with store.batch():
        for session in sessions:
            day = by_day.get(session, events.iloc[0:0]).reset_index(drop=True)[list(EVENT_COLUMNS)]
            store.write_partition(FACTORS, session, frame_to_arrow(day))
            out.append(SessionEvents(session, day))
    return out


def read_events(store: TableStore, as_of=None) -> pd.DataFrame:
    """Every stored corporate-action event dated on or before ``as_of`` (default: all)."""
    return store.read_partitions(FACTORS, end=as_of)


#: How far back a missing symbol is still reported as a gap (beyond: it stopped trading).
GAP_REPORT_SESSIONS = 21


@dataclass
class CleanReport:
    sessions: pd.DatetimeIndex
    rows: dict[pd.Timestamp, int]
    filled: dict[pd.Timestamp, int]
    gaps: pd.DataFrame  # symbol, gap_start, gap_end, sessions, reason (ffill | gap | halt)


def clean_sessions(store: TableStore, sessions: pd.DatetimeIndex, *, max_ffill: int = 3) -> CleanReport:
    """Apply the missing-value policy point in time and replace each session's cleaned partition.

    At session ``t`` nobody knows whether a missing symbol will be back tomorrow, so the policy
    is one-sided: a listed symbol missing at ``t`` whose last real bar is at most ``max_ffill``
    sessions old gets a flat bar at that bar's close (flag ``ffill``, volume 0). Filling only
    gaps that later close would use the future, and would make a partition depend on which
    run wrote it. Missing longer than that is reported, not filled. Halts (zero volume, a
    flat bar at the previous close, no corporate action) are removed and reported.
    """
    require_partitions(store, VALIDATED, sessions)
    bars = read_range(store, VALIDATED, sessions)
    history = read_lookback(store, VALIDATED, sessions[0], GAP_REPORT_SESSIONS)
    frame = (pd.concat([history, bars], ignore_index=True) if len(history) else bars).drop(columns=["raw_row"], errors="ignore")
    frame = frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    halt = _halts(frame)
    real = frame[~halt]
    calendar = sessions_between(frame["date"].min() if len(frame) else sessions[0], sessions[-1])
    fills, gaps = _one_sided_fills(real, frame[halt], calendar, sessions, max_ffill)

    in_range = real["date"].between(sessions[0], sessions[-1])
    kept = real[in_range].assign(filled=False)
    cleaned = pd.concat([kept, fills], ignore_index=True) if len(fills) else kept
    cleaned = cleaned.sort_values(["symbol", "date"], kind="stable")[list(CLEANED_COLUMNS)]
    halts = frame[halt & frame["date"].between(sessions[0], sessions[-1])]
    halt_report = pd.DataFrame({"symbol": halts["symbol"], "gap_start": halts["date"], "gap_end": halts["date"],
                                "sessions": 1, "reason": "halt"})
    rows, filled = {}, {}
    by_day = dict(tuple(cleaned.groupby("date", sort=False)))
    with store.batch():
        for session in sessions:
            day = by_day.get(session, cleaned.iloc[0:0]).reset_index(drop=True)
            store.write_partition(CLEANED, session, frame_to_arrow(day))
            rows[session], filled[session] = len(day), int(day["filled"].sum())
    report = pd.concat([gaps, halt_report], ignore_index=True).sort_values(["symbol", "gap_start"], kind="stable")
    return CleanReport(sessions, rows, filled, report.reset_index(drop=True))


def _halts(frame: pd.DataFrame) -> np.ndarray:
    previous_close = frame.groupby("symbol", sort=False)["close"].shift()
    flat = (frame["open"] == frame["high"]) & (frame["high"] == frame["low"]) & (frame["low"] == frame["close"])
    no_event = (frame["dividend"] == 0) & (frame["split_ratio"] == 1)
    return ((frame["volume"] == 0) & flat & (frame["close"] == previous_close) & no_event).to_numpy()


def _one_sided_fills(real, halted, calendar, sessions, max_ffill):
    """Flat bars for symbols missing at most ``max_ffill`` sessions, and the longer gaps."""
    empty_gaps = pd.DataFrame(columns=["symbol", "gap_start", "gap_end", "sessions", "reason"])
    if real.empty:
        return real.iloc[0:0].assign(filled=True), empty_gaps
    close = real.pivot(index="date", columns="symbol", values="close").reindex(calendar)
    present = close.notna().to_numpy()
    position = np.arange(len(calendar))[:, None]
    last_seen = np.maximum.accumulate(np.where(present, position, -1), axis=0)
    since = np.where(last_seen >= 0, position - last_seen, 0)
    was_halted = np.zeros_like(present)
    if len(halted):
        h = halted.assign(v=True).pivot(index="date", columns="symbol", values="v").reindex(index=calendar, columns=close.columns)
        was_halted = h.fillna(False).to_numpy(dtype=bool)
    in_range = calendar.isin(sessions)[:, None]
    missing = ~present & (last_seen >= 0) & ~was_halted & in_range
    fill = missing & (since <= max_ffill)
    long_gap = missing & (since > max_ffill) & (since <= GAP_REPORT_SESSIONS)

    t_idx, s_idx = np.nonzero(fill)
    last_rows = real.drop_duplicates(["symbol", "date"]).set_index(["symbol", "date"])
    source_keys = pd.MultiIndex.from_arrays([close.columns[s_idx], calendar[last_seen[t_idx, s_idx]]])
    fills = last_rows.loc[source_keys].reset_index()
    last_close = fills["close"].to_numpy()
    fills = fills.assign(date=calendar[t_idx], open=last_close, high=last_close, low=last_close, volume=0,
                         dividend=0.0, split_ratio=1.0, flags=FLAG_FFILL, filled=True)
    report = pd.concat([_runs(close.columns[s_idx], t_idx, calendar, "ffill"),
                        _runs(close.columns[np.nonzero(long_gap)[1]], np.nonzero(long_gap)[0], calendar, "gap")],
                       ignore_index=True)
    return fills, report if len(report) else empty_gaps


def _runs(symbols, positions, calendar, reason: str) -> pd.DataFrame:
    """Consecutive sessions per symbol collapsed into (symbol, gap_start, gap_end, sessions)."""
    cells = pd.DataFrame({"symbol": np.asarray(symbols, dtype=object), "pos": positions}).sort_values(["symbol", "pos"])
    if cells.empty:
        return pd.DataFrame(columns=["symbol", "gap_start", "gap_end", "sessions", "reason"])
    new_run = (cells["symbol"] != cells["symbol"].shift()) | (cells["pos"].diff() != 1)
    grouped = cells.groupby(new_run.cumsum().to_numpy())
    return pd.DataFrame({
        "symbol": grouped["symbol"].first().to_numpy(),
        "gap_start": calendar[grouped["pos"].min().to_numpy()],
        "gap_end": calendar[grouped["pos"].max().to_numpy()],
        "sessions": grouped.size().to_numpy(),
        "reason": reason,
    })


def read_adjusted(store: TableStore, start=None, end=None, symbols=None, as_of=None) -> pd.DataFrame:
    """Cleaned bars with ``adj_open/high/low/close`` and ``adj_volume``, backward-adjusted as of
    ``as_of`` (default: the latest cleaned session), using only events known by then."""
    stored = store.stored_sessions(CLEANED)
    if len(stored) == 0:
        raise FileNotFoundError(f"{CLEANED} has no partitions under {store.data_dir}: materialise it first")
    cutoff = pd.Timestamp(as_of) if as_of is not None else stored[-1]
    upper = min(pd.Timestamp(end), cutoff) if end is not None else cutoff
    bars = store.read_partitions(CLEANED, start, upper, symbols=symbols)
    events = read_events(store, as_of=cutoff)
    if symbols:
        events = events[events["symbol"].isin([s.upper() for s in symbols])]
    return adjust(bars, factors=events if len(events) else pd.DataFrame(columns=list(EVENT_COLUMNS)), as_of=cutoff)
