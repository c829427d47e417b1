"""YFinanceSource undoing Yahoo's split adjustment: Yahoo serves every bar scaled for all later
splits, and the source restores the bars as traded from the split history (``Ticker.splits``),
on real AAPL bars and hand-made ones; a split history that fails or cannot be used rejects its
ticker. Yahoo is the fake of tests/yfinance_support.py; nothing calls Yahoo.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yfinance
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFRateLimitError

from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN, RULE_NETWORK, RULE_PROVIDER_ERROR
from alphatwin_pipelines.sources.yfinance_frames import clean_split_history, later_split_factor
from alphatwin_pipelines.sources.yfinance_source import _yfinance_splits

from fake_yahoo import history_frame
from yfinance_support import (  # noqa: F401  (yahoo is a fixture)
    AAPL_SPLITS,
    DAYS,
    FAST_RETRY,
    Missing,
    make_source,
    sessions,
    split_series,
    yahoo,
)

# yfinance 1.7 itself trips pandas 3.1's inplace deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")


# --- Undoing Yahoo's split adjustment -------------------------------------------------------


def yahoo_view(raw: pd.DataFrame, splits: dict[str, float]) -> pd.DataFrame:
    """What Yahoo serves for as-traded ``raw`` bars: every row scaled for all later splits."""
    split_days = pd.to_datetime(list(splits))
    factor = np.array([np.prod([r for d, r in zip(split_days, splits.values()) if d > day]) for day in raw["date"]])
    frame = history_frame(list(raw["date"].dt.strftime("%Y-%m-%d")))
    frame[["Open", "High", "Low", "Close"]] = raw[["open", "high", "low", "close"]].to_numpy() / factor[:, None]
    frame["Adj Close"] = frame["Close"]
    frame["Volume"] = (raw["volume"].to_numpy() * factor).round().astype("int64")
    frame["Dividends"] = raw["dividend"].to_numpy() / factor
    split_on_row = {pd.Timestamp(d): r for d, r in splits.items()}
    frame["Stock Splits"] = [split_on_row.get(day, 0.0) for day in raw["date"]]
    return frame


@pytest.mark.parametrize(
    "first, last",
    [("2005-02-14", "2005-03-11"),  # the 2005-02-28 2:1 split inside the window, 3 more after it
     ("2014-05-01", "2014-06-20")],  # the 2014-05-08 dividend and the 2014-06-09 7:1 split
)
def test_real_aapl_bars_are_restored_as_traded(yahoo, sp500_bars, first, last):
    raw = sp500_bars[(sp500_bars["symbol"] == "AAPL") & sp500_bars["date"].between(first, last)]
    raw = raw.sort_values("date").reset_index(drop=True)
    assert len(raw) > 15 and raw["split_ratio"].gt(1.0).sum() == 1
    yahoo.answers = {"AAPL": [yahoo_view(raw, AAPL_SPLITS)]}
    yahoo.splits = {"AAPL": [AAPL_SPLITS]}

    result = make_source(yahoo).fetch(["AAPL"], sessions(raw["date"]))

    assert result.rejections == [] and yahoo.split_calls == ["AAPL"]
    bars = result.bars.sort_values("date").reset_index(drop=True)
    assert list(bars["date"]) == list(raw["date"])
    for column in ("open", "high", "low", "close", "dividend"):
        assert np.allclose(bars[column], raw[column], rtol=1e-12, atol=0.0), column
    assert list(bars["volume"]) == list(raw["volume"])
    # The split row carries Yahoo's ratio (the fixture has AlphaVantage's 7.000007 for 2014).
    assert raw.loc[raw["split_ratio"] > 1.0, "date"].dt.strftime("%Y-%m-%d").isin(list(AAPL_SPLITS)).all()
    assert list(bars["split_ratio"]) == [AAPL_SPLITS.get(day.strftime("%Y-%m-%d"), 1.0) for day in raw["date"]]
    if first.startswith("2014"):
        assert bars["dividend"].max() == pytest.approx(3.29, rel=1e-12)  # as declared, pre-split


def test_hand_made_split_adjustment_is_undone(yahoo):
    """No shared data needed: a split before, inside and after the window."""
    splits = {"2020-08-31": 4.0, "2024-06-10": 2.0, "2025-01-15": 3.0}
    frame = history_frame(DAYS, start=10.0, splits={"2024-06-10": 2.0}, dividends={"2024-06-07": 0.1})
    yahoo.answers = {"AAPL": [frame]}
    yahoo.splits = {"AAPL": [splits]}

    bars = make_source(yahoo).fetch(["AAPL"], sessions()).bars

    # Yahoo's close 10, 11, 12, 13: 06-07 came before the 2:1 and the later 3:1 (x6); the
    # rest before the 3:1 only (x3). The 2020 split is older than the window: no effect.
    assert np.allclose(bars["close"], [60.0, 33.0, 36.0, 39.0], rtol=1e-12, atol=0.0)
    assert np.allclose(bars["high"], [66.0, 36.0, 39.0, 42.0], rtol=1e-12, atol=0.0)
    assert list(bars["volume"]) == [166_667, 666_667, 1_000_000, 1_333_333]  # 1e6/6 etc., rounded
    assert bars["volume"].dtype == "int64"
    assert np.allclose(bars["dividend"], [0.6, 0.0, 0.0, 0.0], rtol=1e-12, atol=0.0)
    assert list(bars["split_ratio"]) == [1.0, 2.0, 1.0, 1.0]


def test_later_split_factor_boundaries_and_reverse_splits():
    splits = clean_split_history(split_series({"2024-06-10": 2.0, "2024-07-01": 0.1}))  # 1:10 reverse
    dates = pd.to_datetime(["2024-06-07", "2024-06-10", "2024-06-28", "2024-07-01", "2024-08-01"])

    assert np.allclose(later_split_factor(dates, splits), [0.2, 0.1, 0.1, 1.0, 1.0], rtol=1e-15)
    assert later_split_factor(dates, clean_split_history(pd.Series())).tolist() == [1.0] * 5
    assert clean_split_history(pd.Series()).empty  # yfinance's answer for "no splits"
    with pytest.raises(ValueError, match="no split history"):
        clean_split_history(None)  # yfinance's answer for a hidden failure
    with pytest.raises(ValueError, match="invalid ratio"):
        clean_split_history(split_series({"2024-06-10": -2.0}))


def test_split_history_network_failure_rejects_only_that_ticker(yahoo):
    yahoo.answers = {"AAPL": [history_frame(DAYS)], "MSFT": [history_frame(DAYS)]}
    yahoo.splits = {"AAPL": [YFRateLimitError()]}

    result = make_source(yahoo, failure_threshold=10).fetch(["AAPL", "MSFT"], sessions())

    assert [(r.symbol, r.rule) for r in result.rejections] == [("AAPL", RULE_NETWORK)]
    assert "split history" in result.rejections[0].reason and "YFRateLimitError" in result.rejections[0].reason
    assert yahoo.split_calls == ["AAPL"] * FAST_RETRY.max_attempts + ["MSFT"]
    assert result.requests == 1 + FAST_RETRY.max_attempts + 1
    assert set(result.bars["symbol"]) == {"MSFT"}


def test_split_history_transient_failures_are_retried(yahoo):
    """Including a network cause that yfinance only logged before returning None."""
    logged_timeout = Missing(log="Failed to get ticker 'AAPL' reason: curl: (28) Operation timed out")
    yahoo.answers = {"AAPL": [history_frame(DAYS, splits={"2024-06-11": 2.0})]}
    yahoo.splits = {"AAPL": [CurlTimeout("curl: (28) Operation timed out"), logged_timeout, {"2024-06-11": 2.0}]}

    result = make_source(yahoo).fetch(["AAPL"], sessions())

    assert result.rejections == [] and yahoo.split_calls == ["AAPL"] * 3 and result.requests == 1 + 3
    assert list(result.bars["close"]) == [200.0, 202.0, 102.0, 103.0]


def test_split_history_that_cannot_be_used_is_a_provider_error(yahoo):
    yahoo.answers = {n: [history_frame(DAYS, splits={"2024-06-10": 4.0} if n == "ODD" else None)]
                     for n in ("NONE", "BAD", "ODD", "OK")}
    yahoo.splits = {"NONE": [None], "BAD": [ValueError("unexpected answer")], "ODD": [{"2024-06-11": 4.0}]}

    result = make_source(yahoo).fetch(["NONE", "BAD", "ODD", "OK"], sessions())

    assert [(r.symbol, r.rule) for r in result.rejections] == [
        ("NONE", RULE_PROVIDER_ERROR), ("BAD", RULE_PROVIDER_ERROR), ("ODD", RULE_PROVIDER_ERROR)]
    reasons = [r.reason for r in result.rejections]
    assert "no split history returned" in reasons[0] and "unexpected answer" in reasons[1]
    assert "bars show 4.0, split history shows none" in reasons[2]
    assert yahoo.split_calls == ["NONE", "BAD", "ODD", "OK"]  # not retried
    assert set(result.bars["symbol"]) == {"OK"}


def test_circuit_opening_on_split_history_stops_the_rest(yahoo):
    names = ["A", "B", "C", "D"]
    yahoo.answers = {n: [history_frame(DAYS)] for n in names}
    yahoo.splits = {"A": [YFRateLimitError()]}
    source = make_source(yahoo, batch_size=2, failure_threshold=2)

    result = source.fetch(names, sessions())

    assert [t for t, _ in yahoo.calls] == [["A", "B"]] and yahoo.split_calls == ["A", "A"]
    assert [(r.symbol, r.rule) for r in result.rejections] == [(n, RULE_CIRCUIT_OPEN) for n in names]
    assert result.bars.empty and any("4 symbol(s)" in w for w in result.warnings)


def test_circuit_opening_mid_batch_rejects_tickers_already_downloaded(yahoo):
    yahoo.answers = {"AAPL": [YFRateLimitError()], "MSFT": [history_frame(DAYS)]}
    source = make_source(yahoo, failure_threshold=2)

    result = source.fetch(["AAPL", "MSFT"], sessions())

    assert yahoo.split_calls == []
    assert sorted((r.symbol, r.rule) for r in result.rejections) == [
        ("AAPL", RULE_CIRCUIT_OPEN), ("MSFT", RULE_CIRCUIT_OPEN)]  # never silently dropped
    assert result.bars.empty


def test_default_split_history_is_ticker_splits_with_exceptions_surfaced(monkeypatch):
    seen = []

    class FakeTicker:
        def __init__(self, ticker):
            self.ticker = ticker

        @property
        def splits(self):
            seen.append((self.ticker, yfinance.config.debug.hide_exceptions))
            return split_series(AAPL_SPLITS)

    monkeypatch.setattr(yfinance, "Ticker", FakeTicker)
    before = yfinance.config.debug.hide_exceptions

    splits = _yfinance_splits("BRK-B")

    assert seen == [("BRK-B", False)] and yfinance.config.debug.hide_exceptions == before
    assert list(clean_split_history(splits)) == [2.0, 2.0, 7.0, 4.0]
