"""One malformed input per case, planted in an otherwise clean multi-symbol frame.

Each case must be caught by the expected rule on the planted row, and must cost no good
row: a rule that rejects a bad print's neighbours would quietly thin out real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphatwin_pipelines.calendar import sessions_between
from alphatwin_pipelines.quality import validate

AS_OF = "2024-12-31"
SYMBOLS = ("AAPL", "MSFT", "BRK.B", "XOM", "JPM")
SESSIONS = 80
OHLC = ["open", "high", "low", "close"]


def clean_bars(seed: int = 7) -> pd.DataFrame:
    """Five symbols x 80 sessions (2024-04-15 onwards, spanning 4 July) of cent-rounded random walks."""
    rng = np.random.default_rng(seed)
    dates = sessions_between("2024-04-15", "2025-12-31")[:SESSIONS]
    frames = []
    for i, symbol in enumerate(SYMBOLS):
        close = 40.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.012, SESSIONS)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.003, SESSIONS))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.005, SESSIONS)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.005, SESSIONS)))
        o, h, lo, c = (np.round(x, 2) for x in (open_, high, low, close))
        frames.append(pd.DataFrame({
            "symbol": symbol, "date": dates, "open": o, "high": np.maximum.reduce([h, o, c]),
            "low": np.minimum.reduce([lo, o, c]), "close": c,
            "volume": np.round(2e6 * np.exp(rng.normal(0, 0.25, SESSIONS))).astype("int64"),
            "dividend": 0.0, "split_ratio": 1.0, "source": "synthetic",
        }))
    return pd.concat(frames, ignore_index=True).astype({"symbol": "string", "source": "string"})


def row_of(bars: pd.DataFrame, symbol: str, session: int) -> int:
    return int(np.flatnonzero(bars["symbol"].to_numpy() == symbol)[session])


def set_value(bars: pd.DataFrame, row: int, column: str, value) -> None:
    """Plant a value, widening the column to object only when its dtype cannot hold it exactly."""
    try:
        cast = pd.Series([value]).astype(bars[column].dtype)
        exact = cast.iloc[0] == value or (pd.isna(cast.iloc[0]) and pd.isna(value))
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact:
        bars[column] = bars[column].astype(object)
    bars.loc[row, column] = value


def append_copy(bars: pd.DataFrame, row: int, **changes) -> tuple[pd.DataFrame, int]:
    extra = bars.iloc[[row]].copy()
    for column, value in changes.items():
        if column == "date":
            extra = extra.assign(date=pd.Series([value], index=extra.index, dtype="datetime64[ns]"))
        else:
            extra[column] = extra[column].astype(object)
            extra.loc[extra.index[0], column] = value
    out = pd.concat([bars, extra], ignore_index=True)
    return out, len(out) - 1


# Each case: (bars) -> (bars, planted raw rows that must be caught, rows that must carry the rule).
def modify(column, value, symbol="MSFT", session=30):
    def case(bars):
        row = row_of(bars, symbol, session)
        set_value(bars, row, column, value(bars.loc[row]) if callable(value) else value)
        return bars, [row], [row]
    return case


def append(of_symbol="JPM", session=20, **changes):
    def case(bars):
        bars, row = append_copy(bars, row_of(bars, of_symbol, session), **changes)
        return bars, [row], [row]
    return case


def scale_ohlc(factor, symbol="XOM", session=70):
    def case(bars):
        row = row_of(bars, symbol, session)
        bars.loc[row, OHLC] = bars.loc[row, OHLC].to_numpy(dtype=float) * factor
        return bars, [row], [row]
    return case


def duplicated_row(bars):
    original = row_of(bars, "AAPL", 10)
    bars, copy = append_copy(bars, original)
    return bars, [original, copy], [original, copy]


def stale_for(sessions):
    def case(bars):
        first = row_of(bars, "MSFT", 40)
        rows = list(range(first + 1, first + sessions))
        bars.loc[rows, OHLC] = np.tile(bars.loc[first, OHLC].to_numpy(dtype=float), (len(rows), 1))
        return bars, rows, [rows[-1]]
    return case


def missing_session(bars):
    dropped = row_of(bars, "XOM", 50)
    bars = bars.drop(index=dropped).reset_index(drop=True)
    return bars, [dropped], [dropped]  # the row after the gap now sits at the dropped row's position


def open_gap(bars):
    row = row_of(bars, "BRK.B", 65)
    opened = round(float(bars.loc[row - 1, "close"]) * 1.3, 2)
    bars.loc[row, "open"] = opened
    bars.loc[row, "high"] = max(opened, float(bars.loc[row, "high"]))
    return bars, [row], [row]


def new_symbol_at(level):
    def case(bars):
        bars, row = append_copy(bars, row_of(bars, "AAPL", 5), symbol="BIGP")
        bars.loc[row, OHLC] = np.array([1.0, 1.01, 0.99, 1.0]) * level
        return bars, [row], [row]
    return case


CASES = {
    "nan_close": (modify("close", np.nan), "price.missing"),
    "inf_high": (modify("high", np.inf), "price.infinite"),
    "negative_low": (modify("low", -1.0), "price.non_positive"),
    "zero_open": (modify("open", 0.0), "price.non_positive"),
    "high_below_low": (modify("high", lambda r: r["low"] - 1.0), "ohlc.low_above_high"),
    "open_above_high": (modify("open", lambda r: round(r["high"] * 1.05, 2)), "ohlc.open_above_high"),
    "close_below_low": (modify("close", lambda r: round(r["low"] * 0.95, 2)), "ohlc.low_above_close"),
    "string_in_price": (modify("open", "12.3x"), "schema.non_numeric_value"),
    "string_in_volume": (modify("volume", "lots"), "schema.non_numeric_value"),
    "duplicated_row": (duplicated_row, "key.duplicate"),
    "holiday_2024_07_04": (append(date="2024-07-04"), "date.holiday"),
    "weekend": (append(date="2024-07-06"), "date.weekend"),
    "future_date": (append(date="2025-01-06"), "date.future"),
    "before_calendar": (append(date="1985-01-02"), "date.out_of_calendar"),
    "time_of_day": (append(date="2024-07-05 16:00"), "date.time_of_day"),
    "unparseable_date": (modify("date", "2024-13-45"), "schema.unparseable_date"),
    "null_date": (append(date=None), "schema.null_date"),
    "null_symbol": (append(symbol=None), "schema.null_symbol"),
    "symbol_with_space": (append(symbol="aa pl"), "symbol.bad_format"),
    "symbol_too_long": (append(symbol="TOOLONGSYM"), "symbol.bad_format"),
    "ten_x_jump": (scale_ohlc(10.0), "return.extreme_outlier"),
    "split_1_to_1000": (modify("split_ratio", 0.001), "split.out_of_bounds"),
    "split_zero": (modify("split_ratio", 0.0), "split.non_positive"),
    "split_negative": (modify("split_ratio", -2.0), "split.non_positive"),
    "split_nan": (modify("split_ratio", np.nan), "split.missing"),
    "dividend_above_price": (modify("dividend", lambda r: r["close"] * 2), "dividend.not_below_prev_close"),
    "negative_dividend": (modify("dividend", -0.5), "dividend.negative"),
    "nan_dividend": (modify("dividend", np.nan), "dividend.missing"),
    "negative_volume": (modify("volume", -100), "volume.negative"),
    "fractional_volume": (modify("volume", 1234.5), "volume.fractional"),
    "infinite_volume": (modify("volume", np.inf), "volume.non_finite"),
    # WARNING cases: the row stays, flagged.
    "stale_ohlc_6_sessions": (stale_for(6), "price.stale"),
    "volume_spike": (modify("volume", lambda r: int(r["volume"]) * 40, session=70), "volume.spike"),
    "missing_session_gap": (missing_session, "session.gap_before"),
    "zero_volume": (modify("volume", 0), "volume.zero"),
    "missing_source": (modify("source", None), "source.missing"),
    "large_dividend": (modify("dividend", lambda r: round(r["close"] * 0.3, 2)), "dividend.large"),
    "non_standard_split": (modify("split_ratio", 1.0689), "split.non_standard"),
    "absurd_range": (modify("high", lambda r: round(r["low"] * 1.6, 2)), "ohlc.range_absurd"),
    "absurd_precision": (modify("low", lambda r: r["low"] - 1.234e-7), "price.precision_absurd"),
    "implausible_level": (new_symbol_at(2_000_000.0), "price.implausible_level"),
    "open_gap": (open_gap, "gap.open_outlier"),
    "forty_percent_jump": (scale_ohlc(1.4, symbol="AAPL", session=66), "return.outlier"),
}


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return clean_bars()


def test_matrix_is_large_enough():
    assert len(CASES) >= 25
    assert len({rule for _, rule in CASES.values()}) >= 25


def test_clean_frame_has_no_findings(clean):
    result = validate(clean, as_of=AS_OF)
    assert len(result.validated) == len(clean) and result.failures.empty
    assert (result.validated["flags"] == "").all()


@pytest.mark.parametrize("name", list(CASES))
def test_planted_defect_is_caught_and_good_rows_survive(clean, name):
    plant, rule_id = CASES[name]
    bars, planted, caught = plant(clean.copy())
    result = validate(bars, as_of=AS_OF)
    assert result.accounted_rows == len(bars)

    validated = result.validated.set_index("raw_row")
    quarantined = result.quarantined.set_index("raw_row")
    for row in caught:
        if row in quarantined.index:
            assert rule_id in quarantined.loc[row, "rule_id"].split(","), quarantined.loc[row].to_dict()
        else:
            assert rule_id in validated.loc[row, "flags"].split(","), validated.loc[row].to_dict()
    assert rule_id in set(result.failures.loc[result.failures["raw_row"].isin(caught), "rule_id"])

    good = set(range(len(bars))) - set(planted)
    if name == "missing_session_gap":
        good |= set(caught)  # the row after the gap is good data, only flagged
    lost = good - set(validated.index)
    assert not lost, result.quarantined[result.quarantined["raw_row"].isin(lost)].to_dict("records")
