"""Missing-session policy: short gaps filled flat and flagged, long gaps and halts reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.adjustment import adjust
from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.cleaning import clean
from alphatwin_pipelines.schema import empty_bars

SESSIONS = sessions_between("2021-01-04", "2021-03-31")


def bars(symbol: str, positions, closes=None, volume=None, dividend=None) -> pd.DataFrame:
    """Rows on the given session positions; distinct OHLC so a flat fill is recognisable."""
    n = len(positions)
    close = np.asarray(closes if closes is not None else 100 + np.arange(n), dtype=float)
    return pd.DataFrame(
        {
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
        }
    )


def rows(frame, symbol):
    return frame[frame["symbol"] == symbol].set_index("date")


def test_short_gap_is_filled_flat_with_flags_and_no_volume():
    # S misses sessions 3 and 4 (two sessions); N = 3 fills them.
    raw = bars("S", [0, 1, 2, 5, 6])
    cleaned, report = clean(adjust(raw), SESSIONS[:7], max_ffill=3)
    s = rows(cleaned, "S")
    assert list(s.index) == list(SESSIONS[:7])
    filled = s[s["filled"]]
    assert list(filled.index) == list(SESSIONS[3:5])
    assert (filled["flag"] == "ffill").all() and s.loc[~s["filled"], "flag"].isna().all()
    prev_close = raw["close"].iloc[2]
    for col in ("open", "high", "low", "close", "adj_open", "adj_high", "adj_low", "adj_close"):
        assert (filled[col] == prev_close).all(), col
    assert (filled["volume"] == 0).all() and (filled["adj_volume"] == 0.0).all()
    assert (filled["dividend"] == 0).all() and (filled["split_ratio"] == 1).all()
    assert (filled["source"] == "src-S").all()
    assert report.to_dict("records") == [
        {"symbol": "S", "gap_start": SESSIONS[3], "gap_end": SESSIONS[4], "sessions": 2, "reason": "ffill"}
    ]
    assert cleaned["volume"].dtype == np.int64 and cleaned["filled"].dtype == bool
    assert cleaned["date"].dtype == raw["date"].dtype


def test_gap_of_exactly_n_is_filled_longer_is_reported_not_filled():
    raw = pd.concat([bars("A", [0, 4, 5]), bars("B", [0, 5, 6])], ignore_index=True)  # A: 3 missing, B: 4
    cleaned, report = clean(raw, SESSIONS[:7], max_ffill=3)
    assert rows(cleaned, "A")["filled"].sum() == 3
    b = rows(cleaned, "B")
    assert list(b.index) == [SESSIONS[0], SESSIONS[5], SESSIONS[6]] and not b["filled"].any()
    gap = report[report["reason"] == "gap"]
    assert gap.to_dict("records") == [
        {"symbol": "B", "gap_start": SESSIONS[1], "gap_end": SESSIONS[4], "sessions": 4, "reason": "gap"}
    ]
    none_filled, report0 = clean(raw, SESSIONS[:7], max_ffill=0)
    assert not none_filled["filled"].any() and set(report0["reason"]) == {"gap"}
    with pytest.raises(ValueError):
        clean(raw, SESSIONS, max_ffill=-1)


def test_only_sessions_inside_a_symbols_life_count():
    raw = pd.concat([bars("EARLY", range(0, 10)), bars("LATE", [4, 5, 6]), bars("GONE", [0, 1])], ignore_index=True)
    cleaned, report = clean(raw, SESSIONS[:10])
    assert len(cleaned) == len(raw) and not cleaned["filled"].any() and report.empty
    assert list(report.columns) == ["symbol", "gap_start", "gap_end", "sessions", "reason"]


def test_volume_is_never_carried_forward():
    raw = bars("V", [0, 1, 3, 4], volume=[5_000_000] * 4)
    cleaned, _ = clean(adjust(raw), SESSIONS[:5])
    filled = cleaned[cleaned["filled"]]
    assert len(filled) == 1
    assert filled["volume"].tolist() == [0] and filled["adj_volume"].tolist() == [0.0]
    assert (cleaned.loc[~cleaned["filled"], "volume"] == 5_000_000).all()


def test_halts_are_dropped_reported_and_not_filled():
    closes = [10.0, 11.0, 11.0, 11.0, 12.0, 12.0, 13.0]
    volume = [100, 100, 0, 0, 100, 0, 0]
    raw = bars("H", range(7), closes=closes, volume=volume)
    flat = [2, 3, 6]  # 2, 3: halted at the previous close; 6: flat but not at the previous close
    for col in ("open", "high", "low"):
        raw.loc[flat, col] = raw.loc[flat, "close"]
    # row 5: zero volume but a real range (not a halt); row 6: flat at 13 != 12 (not a halt)
    other = bars("X", range(3), closes=[5.0, 5.0, 5.0], volume=[0, 0, 0], dividend=[0, 0, 0.1])
    for col in ("open", "high", "low"):
        other[col] = 5.0  # X row 0: no previous close; row 2: carries a dividend -> both kept
    raw = pd.concat([raw, other], ignore_index=True)
    cleaned, report = clean(raw, SESSIONS[:7])
    h = rows(cleaned, "H")
    assert SESSIONS[2] not in h.index and SESSIONS[3] not in h.index  # dropped, and not forward-filled
    assert list(h.index) == [SESSIONS[i] for i in (0, 1, 4, 5, 6)] and not h["filled"].any()
    x = rows(cleaned, "X")
    assert list(x.index) == list(SESSIONS[[0, 2]])  # row 1 is a halt (flat, 0 volume, at previous close)
    assert report.to_dict("records") == [
        {"symbol": "H", "gap_start": SESSIONS[2], "gap_end": SESSIONS[3], "sessions": 2, "reason": "halt"},
        {"symbol": "X", "gap_start": SESSIONS[1], "gap_end": SESSIONS[1], "sessions": 1, "reason": "halt"},
    ]


def test_inputs_are_not_mutated_and_order_does_not_matter():
    raw = adjust(pd.concat([bars("A", [0, 2, 3]), bars("B", [0, 1, 5])], ignore_index=True))
    shuffled = raw.sample(frac=1.0, random_state=7)
    snapshot = shuffled.copy(deep=True)
    sessions = SESSIONS[:6]
    cleaned, report = clean(shuffled, sessions)
    pd.testing.assert_frame_equal(shuffled, snapshot)
    assert list(sessions) == list(SESSIONS[:6])
    again, report2 = clean(raw, sessions)
    pd.testing.assert_frame_equal(cleaned, again)
    pd.testing.assert_frame_equal(report, report2)
    keys = cleaned[["symbol", "date"]]
    assert keys.equals(keys.sort_values(["symbol", "date"]).reset_index(drop=True))


def test_duplicates_are_refused():
    raw = bars("D", [0, 1])
    with pytest.raises(ValueError, match="duplicate"):
        clean(pd.concat([raw, raw]), SESSIONS[:2])


def test_empty_input():
    cleaned, report = clean(adjust(empty_bars()), SESSIONS)
    assert cleaned.empty and report.empty and {"filled", "flag", "adj_close"} <= set(cleaned.columns)
