"""Properties that must hold for any input, however malformed: every raw row is accounted
for exactly once, and neither the partition nor its history is modified."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphatwin_pipelines.quality import validate

# Around 4 July 2024: sessions, a weekend, a holiday, plus a future date and a time of day.
DATES = [pd.Timestamp(d) for d in pd.date_range("2024-06-26", "2024-07-09")] + [
    pd.Timestamp("2031-01-06"), pd.Timestamp("2024-07-01 15:30"), None,
]
SYMBOLS = ["AAPL", "MSFT", "BRK.B", "aa pl", "TOOLONGSYM", "", None]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-9, 1e12]

prices = st.one_of(
    st.floats(min_value=0.5, max_value=500, allow_nan=False),
    st.sampled_from(SPECIAL),
)
volumes = st.one_of(
    st.integers(min_value=-5, max_value=10**9),
    st.sampled_from([0.5, np.nan, np.inf, 1e20]),
)
splits = st.sampled_from([1.0, 1.0, 1.0, 2.0, 0.5, 1.0689, 0.0, -2.0, np.nan, 1000.0, 0.001, np.inf])
dividends = st.one_of(st.just(0.0), st.floats(min_value=-1, max_value=600), st.sampled_from([np.nan, np.inf]))


@st.composite
def bar_frames(draw, max_rows: int = 40) -> pd.DataFrame:
    n = draw(st.integers(min_value=0, max_value=max_rows))
    column = lambda strategy: draw(st.lists(strategy, min_size=n, max_size=n))  # noqa: E731
    frame = pd.DataFrame({
        "symbol": column(st.sampled_from(SYMBOLS)),
        "date": pd.Series(column(st.sampled_from(DATES)), dtype="datetime64[ns]"),
        **{name: column(prices) for name in ("open", "high", "low", "close")},
        "volume": column(volumes),
        "dividend": column(dividends),
        "split_ratio": column(splits),
        "source": column(st.sampled_from(["synthetic", "", None])),
    })
    if n and draw(st.booleans()):  # text where numbers belong
        name = draw(st.sampled_from(["open", "close", "volume", "split_ratio"]))
        frame[name] = frame[name].astype(object)
        frame.loc[draw(st.integers(0, n - 1)), name] = draw(st.sampled_from(["abc", "1,5", "12.3x", ""]))
    if n and draw(st.booleans()):  # a caller's own index, duplicated and unordered
        frame.index = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    return frame


PROPERTY_SETTINGS = settings(max_examples=50, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY_SETTINGS
@given(raw=bar_frames(), history=st.one_of(st.none(), bar_frames(max_rows=20)))
def test_every_raw_row_is_validated_or_quarantined_exactly_once(raw, history):
    result = validate(raw, history=history, as_of="2024-12-31")
    validated_rows = result.validated["raw_row"].tolist()
    quarantined = result.quarantined
    rejected_rows = quarantined.loc[quarantined["action"] == "rejected", "raw_row"].tolist()
    event_rows = quarantined.loc[quarantined["action"] == "event_quarantined", "raw_row"].tolist()

    assert len(raw) == len(result.validated) + len(set(rejected_rows)) == result.accounted_rows
    assert len(quarantined) == quarantined["raw_row"].nunique()  # one quarantine row per raw row
    assert sorted(validated_rows + rejected_rows) == list(range(len(raw)))
    assert set(event_rows) <= set(validated_rows)  # a bad event alone never costs the bar
    assert (quarantined["rule_id"].str.len() > 0).all()
    assert set(result.failures["raw_row"]) >= set(quarantined["raw_row"])
    # Whatever survived is canonical and finite, so downstream code can trust it.
    validated = result.validated
    assert np.isfinite(validated[["open", "high", "low", "close"]].to_numpy()).all()
    assert (validated["low"] <= validated[["open", "close"]].min(axis=1)).all()
    assert (validated["high"] >= validated[["open", "close"]].max(axis=1)).all()
    assert str(validated["volume"].dtype) == "int64" and (validated["volume"] >= 0).all()
    assert np.isfinite(validated["dividend"]).all() and (validated["dividend"] >= 0).all()
    assert np.isfinite(validated["split_ratio"]).all() and (validated["split_ratio"] > 0).all()
    assert not validated.duplicated(["symbol", "date"]).any()


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(raw=bar_frames(), history=st.one_of(st.none(), bar_frames(max_rows=20)))
def test_validation_never_mutates_its_inputs(raw, history):
    raw_before = raw.copy(deep=True)
    history_before = None if history is None else history.copy(deep=True)
    validate(raw, history=history, as_of="2024-12-31")
    pd.testing.assert_frame_equal(raw, raw_before)
    if history is not None:
        pd.testing.assert_frame_equal(history, history_before)


@settings(PROPERTY_SETTINGS, max_examples=20)
@given(raw=bar_frames(max_rows=25))
def test_validation_is_deterministic(raw):
    first, second = validate(raw, as_of="2024-12-31"), validate(raw, as_of="2024-12-31")
    for name in ("validated", "quarantined", "failures", "summary"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
