"""Point-in-time missing-session policy (``alphatwin_pipelines.cleaning.clean``).

A symbol missing at session ``t`` is filled flat from its last real bar only while that bar
is at most ``max_ffill`` sessions old; longer absences are reported, halts dropped. The
property test at the end is the reason the policy exists: the rows for ``t`` must not
depend on anything dated after ``t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.adjustment import adjust
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.cleaning import FLAG_FFILL, REPORT_COLUMNS, clean
from alphatwin_pipelines.schema import empty_bars

SESSIONS = sessions_between("2021-01-04", "2021-03-31")


def bars(symbol: str, positions, closes=None, volume=None, dividend=None) -> pd.DataFrame:
    """Rows on the given session positions; distinct OHLC so a flat fill is recognisable."""
    n = len(positions)
    close = np.asarray(closes if closes is not None else 100 + np.arange(n), dtype=float)
    return pd.DataFrame({
        "symbol": symbol,
        "date": SESSIONS[list(positions)],
        "open": close - 0.5,
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": np.asarray(volume if volume is not None else 1000 + np.arange(n), dtype=np.int64),
        "dividend": np.asarray(dividend if dividend is not None else [0.0] * n, dtype=float),
        "split_ratio": 1.0,
        "source": f"src-{symbol}",
    })


def run(raw, first: int, last: int, **kwargs):
    """Clean sessions ``first..last``; the calendar covers everything from session 0."""
    return clean(raw, SESSIONS[first:last + 1], calendar=SESSIONS[:last + 1], **kwargs)


def rows(frame, symbol):
    return frame[frame["symbol"] == symbol].set_index("date")


def record(symbol, start, end, reason):
    return {"symbol": symbol, "gap_start": SESSIONS[start], "gap_end": SESSIONS[end],
            "sessions": end - start + 1, "reason": reason}


def test_short_absence_is_filled_flat_at_the_last_close_with_flags_and_no_volume():
    raw = bars("S", [0, 1, 2, 5, 6], volume=[5_000_000] * 5)  # misses sessions 3 and 4
    cleaned, report = run(raw, 0, 6, max_ffill=3)
    s = rows(cleaned, "S")
    assert list(s.index) == list(SESSIONS[:7])
    filled = s[s["filled"]]
    assert list(filled.index) == list(SESSIONS[3:5])
    assert (filled["flags"] == FLAG_FFILL).all() and (s.loc[~s["filled"], "flags"] == "").all()
    for column in ("open", "high", "low", "close"):
        assert (filled[column] == raw["close"].iloc[2]).all(), column
    assert (filled["volume"] == 0).all(), "volume is never filled"
    assert (s.loc[~s["filled"], "volume"] == 5_000_000).all()
    assert (filled["dividend"] == 0).all() and (filled["split_ratio"] == 1).all()
    assert (filled["source"] == "src-S").all()
    assert report.to_dict("records") == [record("S", 3, 4, "ffill")]
    assert list(report.columns) == list(REPORT_COLUMNS)
    assert cleaned["volume"].dtype == np.int64 and cleaned["filled"].dtype == bool
    assert cleaned["date"].dtype == raw["date"].dtype


def test_adjusted_columns_are_filled_flat_too():
    cleaned, _ = run(adjust(bars("A", [0, 1, 3])), 0, 3)
    filled = cleaned[cleaned["filled"]]
    assert len(filled) == 1
    for column in ("adj_open", "adj_high", "adj_low", "adj_close"):
        assert filled[column].iloc[0] == cleaned["adj_close"].iloc[1], column
    assert filled["adj_volume"].tolist() == [0.0]


def test_a_gap_longer_than_n_fills_its_first_n_sessions_and_reports_the_rest():
    # Missing 1..5: on sessions 1..3 the last bar is at most 3 old, so nobody can yet tell
    # this from a short gap; from 4 on it is too old.
    raw = bars("B", [0, 6, 7])
    cleaned, report = run(raw, 0, 7, max_ffill=3)
    b = rows(cleaned, "B")
    assert list(b.index[b["filled"]]) == list(SESSIONS[1:4])
    assert list(b.index[~b["filled"]]) == list(SESSIONS[[0, 6, 7]])
    assert report.to_dict("records") == [record("B", 1, 3, "ffill"), record("B", 4, 5, "gap")]
    none_filled, report0 = run(raw, 0, 7, max_ffill=0)
    assert not none_filled["filled"].any() and report0.to_dict("records") == [record("B", 1, 5, "gap")]
    with pytest.raises(ValueError, match="max_ffill"):
        run(raw, 0, 7, max_ffill=-1)


def test_listing_life_late_listed_gets_no_fills_delisted_at_most_n():
    raw = pd.concat([bars("EARLY", range(0, 30)), bars("LATE", [4, 5, 6]), bars("GONE", [0, 1])], ignore_index=True)
    cleaned, report = run(raw, 0, 29, max_ffill=3, report_window=10)
    late = rows(cleaned, "LATE")
    assert late.index.min() == SESSIONS[4], "no fills before the first bar"
    gone = rows(cleaned, "GONE")
    assert list(gone.index[gone["filled"]]) == list(SESSIONS[2:5]), "at most N fills after the last bar"
    assert not rows(cleaned, "EARLY")["filled"].any()
    # LATE's last bar is at 6: filled 7..9, reported 10..16 (10 sessions after its last bar)
    assert report.to_dict("records") == [
        record("GONE", 2, 4, "ffill"), record("GONE", 5, 11, "gap"),
        record("LATE", 7, 9, "ffill"), record("LATE", 10, 16, "gap"),
    ]


def test_history_before_the_sessions_only_supplies_the_last_bar():
    raw = bars("H", range(0, 8))  # last real bar at 7
    cleaned, report = run(raw, 10, 12, max_ffill=3)
    assert list(cleaned["date"]) == [SESSIONS[10]] and cleaned["filled"].all()
    assert cleaned["close"].iloc[0] == raw["close"].iloc[7]
    assert report.to_dict("records") == [record("H", 10, 10, "ffill"), record("H", 11, 12, "gap")]


def test_halts_are_dropped_reported_and_not_filled():
    closes = [10.0, 11.0, 11.0, 11.0, 12.0, 12.0, 13.0]
    volume = [100, 100, 0, 0, 100, 0, 0]
    raw = bars("H", range(7), closes=closes, volume=volume)
    flat = [2, 3, 6]  # 2, 3: halted at the previous close; 6: flat but not at the previous close
    for column in ("open", "high", "low"):
        raw.loc[flat, column] = raw.loc[flat, "close"]
    # X row 0: no previous close; row 1: a halt; row 2: carries a dividend -> 0 and 2 kept
    other = bars("X", range(3), closes=[5.0, 5.0, 5.0], volume=[0, 0, 0], dividend=[0, 0, 0.1])
    other[["open", "high", "low"]] = 5.0
    cleaned, report = run(pd.concat([raw, other], ignore_index=True), 0, 6)
    h = rows(cleaned, "H")
    assert list(h.index) == list(SESSIONS[[0, 1, 4, 5, 6]]) and not h["filled"].any()
    x = rows(cleaned, "X")
    assert list(x.index[~x["filled"]]) == list(SESSIONS[[0, 2]])
    assert SESSIONS[1] not in x.index, "a halted session is not filled"
    assert report.to_dict("records") == [
        record("H", 2, 2, "halt"), record("H", 3, 3, "halt"), record("X", 1, 1, "halt"),
        record("X", 3, 5, "ffill"), record("X", 6, 6, "gap"),  # X ends at 2: unknown at 3..6
    ]


def test_inputs_are_not_mutated_and_row_order_does_not_matter():
    raw = pd.concat([bars("A", [0, 2, 3]), bars("B", [0, 1, 5])], ignore_index=True)
    shuffled = raw.sample(frac=1.0, random_state=7)
    snapshot, sessions, calendar = shuffled.copy(deep=True), SESSIONS[:6], SESSIONS[:6]
    cleaned, report = clean(shuffled, sessions, calendar=calendar)
    pd.testing.assert_frame_equal(shuffled, snapshot)
    assert list(sessions) == list(SESSIONS[:6]) and list(calendar) == list(SESSIONS[:6])
    again, report2 = clean(raw, sessions, calendar=calendar)
    pd.testing.assert_frame_equal(cleaned, again)
    pd.testing.assert_frame_equal(report, report2)
    keys = cleaned[["symbol", "date"]]
    assert keys.equals(keys.sort_values(["symbol", "date"]).reset_index(drop=True))


def test_duplicates_are_refused():
    raw = bars("D", [0, 1])
    with pytest.raises(ValueError, match="duplicate"):
        run(pd.concat([raw, raw]), 0, 1)


def test_empty_input():
    cleaned, report = clean(empty_bars(), SESSIONS, calendar=SESSIONS)
    assert cleaned.empty and report.empty and {"filled", "flags"} <= set(cleaned.columns)
    assert list(report.columns) == list(REPORT_COLUMNS)


# -- no look-ahead --------------------------------------------------------------------------
CALENDAR = SESSIONS[:25]


@st.composite
def panels(draw) -> pd.DataFrame:
    """Random symbols with holes, halts (flat, no volume, at the previous close) and events."""
    frames = []
    for i in range(draw(st.integers(1, 4))):
        kinds = draw(st.lists(st.sampled_from(["trade"] * 4 + ["none"] * 3 + ["halt", "event"]),
                              min_size=len(CALENDAR), max_size=len(CALENDAR)))
        closes = draw(st.lists(st.integers(5, 9), min_size=len(CALENDAR), max_size=len(CALENDAR)))
        records, previous = [], None
        for day, kind, close in zip(CALENDAR, kinds, closes):
            if kind == "none":
                continue
            flat = kind != "trade" and previous is not None
            price = float(previous if flat else close)
            records.append({"symbol": f"S{i}", "date": day, "open": price if flat else price - 0.5,
                            "high": price if flat else price + 1, "low": price if flat else price - 1,
                            "close": price, "volume": 0 if flat else 100,
                            "dividend": 0.1 if kind == "event" else 0.0, "split_ratio": 1.0, "source": "s"})
            previous = price
        frames.append(pd.DataFrame.from_records(records, columns=list(bars("x", []).columns)))
    return pd.concat(frames, ignore_index=True).astype({"volume": np.int64})


def at(cleaned: pd.DataFrame, session) -> pd.DataFrame:
    return cleaned[cleaned["date"] == session].reset_index(drop=True)


@settings(max_examples=150, deadline=None)
@given(panel=panels(), first=st.integers(0, 24), t=st.integers(0, 24), max_ffill=st.integers(0, 4))
def test_the_rows_of_a_session_never_depend_on_later_rows(panel, first, t, max_ffill):
    first, t = min(first, t), max(first, t)
    session = CALENDAR[t]
    full, _ = clean(panel, CALENDAR[first:], calendar=CALENDAR, max_ffill=max_ffill)
    past = panel[panel["date"] <= session]
    # the same run without the rows after t; a run ending at t; a daily run of t alone
    without_future, _ = clean(past, CALENDAR[first:], calendar=CALENDAR, max_ffill=max_ffill)
    ending_at_t, _ = clean(past, CALENDAR[first:t + 1], calendar=CALENDAR[:t + 1], max_ffill=max_ffill)
    daily, _ = clean(past, CALENDAR[t:t + 1], calendar=CALENDAR[:t + 1], max_ffill=max_ffill)
    expected = at(full, session)
    for other in (without_future, ending_at_t, daily):
        pd.testing.assert_frame_equal(at(other, session), expected)
    # and what is there follows the policy: real rows, or flat fills from a recent enough bar
    for row in expected.itertuples():
        real = past[(past["symbol"] == row.symbol) & (past["date"] < session)]
        if row.filled:
            assert row.volume == 0 and row.open == row.high == row.low == row.close == real["close"].iloc[-1]
            assert t - CALENDAR.get_loc(real["date"].iloc[-1]) <= max_ffill


def test_adjusted_read_of_some_symbols_works_before_any_corporate_action_is_stored(research_dir):
    """A fresh data directory has cleaned bars but no adjustment_factors yet: prices read as stored."""
    import shutil

    from alphatwin_pipelines.tables import read_adjusted
    from alphatwin_pipelines.storage import TableStore

    shutil.rmtree(research_dir / "adjustment_factors")
    store = TableStore(research_dir)
    symbols = sorted(store.read_table("universe")["symbol"])[:2]
    bars = read_adjusted(store, symbols=symbols)
    assert sorted(bars["symbol"].unique()) == symbols
    assert np.array_equal(bars["adj_close"].to_numpy(), bars["close"].to_numpy(), equal_nan=True)


def test_an_adjusted_window_equals_the_same_rows_of_a_full_adjusted_read(research_dir):
    """A window reads only the events from its start on; its prices equal the full read's, bit for bit."""
    from alphatwin_pipelines.tables import read_adjusted, read_events
    from alphatwin_pipelines.storage import TableStore

    store = TableStore(research_dir)
    full = read_adjusted(store)
    events = read_events(store)
    start = pd.Timestamp(events["date"].sort_values().iloc[len(events) // 2])  # events before and after it
    window = read_adjusted(store, start=start)
    expected = full[full["date"] >= start].reset_index(drop=True)
    pd.testing.assert_frame_equal(window.reset_index(drop=True), expected, check_exact=True)
    assert (events["date"] < start).any() and not np.array_equal(full["adj_close"], full["close"], equal_nan=True)
