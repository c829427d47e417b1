"""YFinanceSource against the real ``yfinance.download`` with only ``Ticker.history`` faked.

Faking one level down keeps the frame shape honest: download() itself concatenates the
per-ticker frames, reindexes them to the union of dates, swaps the column levels to
(Price, Ticker) and logs per-ticker failures, exactly as it does against Yahoo. Split
histories (``Ticker.splits``) are injected through ``split_history``; nothing calls Yahoo.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yfinance
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFRateLimitError

from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN, RULE_NETWORK, RULE_NO_DATA, RULE_PROVIDER_ERROR
from alphatwin_pipelines.sources.resilience import RateLimiter, RetryPolicy
from alphatwin_pipelines.sources.yfinance_frames import clean_split_history, later_split_factor
from alphatwin_pipelines.sources.yfinance_source import (
    DOWNLOAD_OPTIONS,
    YFinanceSource,
    _yfinance_download,
    _yfinance_splits,
)

from fake_yahoo import NY, fake_ticker, history_frame

# yfinance 1.7 itself trips pandas 3.1's inplace deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.5, max_delay_s=8.0)
DAYS = ["2024-06-07", "2024-06-10", "2024-06-11", "2024-06-12"]
# AAPL's real split history, as Yahoo reports it.
AAPL_SPLITS = {"2000-06-21": 2.0, "2005-02-28": 2.0, "2014-06-09": 7.0, "2020-08-31": 4.0}


class Missing:
    """history()'s soft failure: it logs, records _last_error and returns utils.empty_df()."""

    def __init__(self, error: str = "possibly delisted; no price data found  (1d 2024-06-07 -> 2024-06-13)",
                 log: str | None = None):
        self.error, self.log = error, log


def split_series(splits: dict[str, float] | None = None) -> pd.Series:
    """Shaped like ``Ticker.splits``: ratios on exchange-midnight dates; ``pd.Series()`` if none."""
    if not splits:
        return pd.Series()
    index = pd.DatetimeIndex(pd.to_datetime(list(splits))).tz_localize(NY)
    return pd.Series(list(splits.values()), index=index.rename("Date"), name="Stock Splits", dtype="float64")


class FakeYahoo:
    """Scripted per-ticker answers (frame, exception or Missing) behind the real download().

    Each ticker's answers are used in order; the last one repeats. ``splits`` scripts the
    split histories the same way (a dict of date -> ratio, an exception, or None); a ticker
    not listed has no splits.
    """

    def __init__(self, monkeypatch):
        self.answers: dict[str, list] = {}
        self.calls: list[tuple[list[str], dict]] = []
        self.splits: dict[str, list] = {}
        self.split_calls: list[str] = []
        fake_ticker(monkeypatch, self.history)

    def history(self, ticker, **_):
        queue = self.answers[ticker.ticker]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Missing):
            if answer.log:
                yfinance.utils.get_yf_logger().error(answer.log)
            ticker._price_history._last_error = answer.error
            return yfinance.utils.empty_df()
        return answer.copy()

    def download(self, tickers, **options):
        self.calls.append((list(tickers), options))
        return yfinance.download(tickers, **options)

    def split_history(self, ticker: str):
        self.split_calls.append(ticker)
        queue = self.splits.get(ticker, [{}])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Missing):  # yfinance hiding an exception: log, return None
            yfinance.utils.get_yf_logger().error(answer.log or answer.error)
            return None
        return None if answer is None else split_series(answer)


@pytest.fixture
def yahoo(monkeypatch) -> FakeYahoo:
    return FakeYahoo(monkeypatch)


class SleepLog(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_source(yahoo, **options) -> YFinanceSource:
    return YFinanceSource(**{"download": yahoo.download, "split_history": yahoo.split_history,
                             "retry": FAST_RETRY, "sleep": SleepLog(), **options})


def sessions(days=DAYS) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(days)))


def test_fake_produces_yfinance_download_shape(yahoo):
    """What the parser relies on, as produced by yfinance's own concatenation code."""
    yahoo.answers = {"AAPL": [history_frame(DAYS)], "MSFT": [history_frame(DAYS[:2])], "DEAD": [Missing()]}
    frame = yfinance.download(["AAPL", "MSFT", "DEAD"], start="2024-06-07", end="2024-06-13", **DOWNLOAD_OPTIONS)

    assert frame.columns.names == ["Price", "Ticker"]
    assert frame.index.name == "Date" and frame.index.tz is None  # daily bars: ignore_tz
    assert set(frame.columns.get_level_values("Price")) == {
        "Adj Close", "Close", "Dividends", "High", "Low", "Open", "Stock Splits", "Volume"}
    assert ("Dividends", "DEAD") not in frame.columns  # empty_df() has no action columns
    assert frame.xs("DEAD", axis=1, level="Ticker").isna().all().all()
    assert frame[("Volume", "AAPL")].dtype == "int64"
    assert frame[("Volume", "MSFT")].dtype == "float64"  # reindexed to the union of dates
    single = yfinance.download(["AAPL"], start="2024-06-07", end="2024-06-13", **DOWNLOAD_OPTIONS)
    assert isinstance(single.columns, pd.MultiIndex)


def test_parses_bars_actions_and_missing_tickers(yahoo):
    yahoo.answers = {
        "AAPL": [history_frame(DAYS, splits={"2024-06-10": 4.0}, dividends={"2024-06-12": 0.25})],
        "MSFT": [history_frame(["2024-06-07", "2024-06-12"], start=400.0)],
        "DEAD": [Missing()],
    }
    yahoo.splits = {"AAPL": [{"2020-08-31": 4.0, "2024-06-10": 4.0}]}
    wanted = sessions(["2024-06-07", "2024-06-10", "2024-06-12"])  # 06-11 not requested

    result = make_source(yahoo).fetch(["aapl", "MSFT", "DEAD"], wanted)

    bars = result.bars.set_index(["symbol", "date"])
    assert list(bars.loc["AAPL"].index.strftime("%m-%d")) == ["06-07", "06-10", "06-12"]
    assert list(bars.loc["MSFT"].index.strftime("%m-%d")) == ["06-07", "06-12"]  # no NaN row for 06-10
    aapl = bars.loc["AAPL"]
    assert list(aapl["split_ratio"]) == [1.0, 4.0, 1.0]
    assert list(aapl["dividend"]) == [0.0, 0.0, 0.25]
    # Close, not Adj Close; 06-07 traded before the 4:1 split, Yahoo shows it divided by 4.
    assert list(aapl["close"]) == [400.0, 101.0, 103.0]
    assert list(aapl["open"]) == [398.0, 100.5, 102.5]
    assert list(aapl["volume"]) == [250_000, 2_000_000, 4_000_000]
    assert list(bars.loc["MSFT"]["volume"]) == [1_000_000, 2_000_000]
    assert list(bars.loc["MSFT"]["close"]) == [400.0, 401.0]  # no splits: unchanged
    assert set(result.bars["source"]) == {"yfinance"}
    assert [(r.symbol, r.rule) for r in result.rejections] == [("DEAD", RULE_NO_DATA)]
    assert "possibly delisted" in result.rejections[0].reason
    tickers, options = yahoo.calls[0]
    assert len(yahoo.calls) == 1  # "no data" is an answer, not retried
    assert sorted(yahoo.split_calls) == ["AAPL", "MSFT"]  # none for DEAD, which has no bars
    assert result.requests == 1 + 2
    assert sorted(tickers) == ["AAPL", "DEAD", "MSFT"]
    assert options == {"start": "2024-06-07", "end": "2024-06-13", **DOWNLOAD_OPTIONS}


def test_symbols_are_downloaded_in_batches(yahoo):
    names = ["A", "B", "C", "D", "E"]
    yahoo.answers = {n: [history_frame(DAYS)] for n in names}

    result = make_source(yahoo, batch_size=2).fetch(names, sessions())

    assert [t for t, _ in yahoo.calls] == [["A", "B"], ["C", "D"], ["E"]]
    assert yahoo.split_calls == names
    assert result.requests == 3 + 5
    assert sorted(set(result.bars["symbol"])) == names


def test_rate_limited_ticker_is_retried_alone(yahoo):
    yahoo.answers = {"AAPL": [YFRateLimitError(), history_frame(DAYS)], "MSFT": [history_frame(DAYS)]}
    source = make_source(yahoo)

    result = source.fetch(["AAPL", "MSFT"], sessions())

    assert [t for t, _ in yahoo.calls] == [["AAPL", "MSFT"], ["AAPL"]]
    assert result.rejections == [] and result.requests == 2 + 2
    assert result.bars.groupby("symbol").size().to_dict() == {"AAPL": 4, "MSFT": 4}
    assert len(source._sleep) == 1 and 0.0 <= source._sleep[0] <= FAST_RETRY.base_delay_s


def test_network_cause_logged_before_delisted_message_is_retried(yahoo):
    """yfinance's default config reports a timeout as "no timezone found"; its earlier log line
    carries the real cause."""
    timeout = Missing("possibly delisted; no timezone found",
                      log="Failed to get ticker 'AAPL' reason: Failed to perform, curl: (28) Operation timed out")
    yahoo.answers = {"AAPL": [timeout, history_frame(DAYS)]}

    result = make_source(yahoo).fetch(["AAPL"], sessions())

    assert len(yahoo.calls) == 2 and result.rejections == [] and len(result.bars) == 4


def test_exception_from_download_is_retried(yahoo):
    failures = [CurlTimeout("Failed to perform, curl: (28) Operation timed out")]

    def flaky_download(tickers, **options):
        if failures:
            raise failures.pop()
        return yahoo.download(tickers, **options)

    yahoo.answers = {"AAPL": [history_frame(DAYS)]}
    source = YFinanceSource(download=flaky_download, split_history=yahoo.split_history, retry=FAST_RETRY,
                            sleep=SleepLog())
    result = source.fetch(["AAPL"], sessions())

    assert result.rejections == [] and len(result.bars) == 4 and result.requests == 2 + 1


def test_non_transient_exception_is_a_provider_error_without_retry():
    calls = []

    def broken(tickers, **options):
        calls.append(tickers)
        raise ValueError("unexpected answer")

    result = YFinanceSource(download=broken, retry=FAST_RETRY, sleep=SleepLog()).fetch(["AAPL", "MSFT"], sessions())

    assert len(calls) == 1
    assert [(r.symbol, r.rule) for r in result.rejections] == [("AAPL", RULE_PROVIDER_ERROR), ("MSFT", RULE_PROVIDER_ERROR)]


def test_circuit_opens_and_remaining_batches_are_not_attempted(yahoo):
    names = ["A", "B", "C", "D"]
    yahoo.answers = {"DEAD": [Missing()], **{n: [YFRateLimitError()] for n in names}}
    source = make_source(yahoo, batch_size=1, failure_threshold=2, retry=RetryPolicy(max_attempts=5, base_delay_s=0.5))

    result = source.fetch(["DEAD", *names], sessions())

    assert len(yahoo.calls) == result.requests == 3  # DEAD once, A twice; B, C, D never tried
    assert [(r.symbol, r.rule) for r in result.rejections] == [
        ("DEAD", RULE_NO_DATA), *((n, RULE_CIRCUIT_OPEN) for n in names)]
    assert result.bars.empty
    assert any("circuit open" in w and "4 symbol(s)" in w for w in result.warnings)
    assert len(source._sleep) == 1  # no pointless sleep before the refused third attempt

    later = source.fetch(["A"], sessions())
    assert len(yahoo.calls) == 3 and [r.rule for r in later.rejections] == [RULE_CIRCUIT_OPEN]


def test_retries_exhausted_below_threshold_is_a_network_rejection(yahoo):
    yahoo.answers = {"AAPL": [YFRateLimitError()], "MSFT": [history_frame(DAYS)]}
    source = make_source(yahoo, failure_threshold=10)

    result = source.fetch(["AAPL", "MSFT"], sessions())

    assert [(r.symbol, r.rule) for r in result.rejections] == [("AAPL", RULE_NETWORK)]
    assert "YFRateLimitError" in result.rejections[0].reason
    assert len(yahoo.calls) == FAST_RETRY.max_attempts
    assert set(result.bars["symbol"]) == {"MSFT"}
    assert result.warnings == []


def test_rate_limit_counts_tickers(yahoo):
    class FakeTime:
        now = 0.0

        def clock(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    fake = FakeTime()
    yahoo.answers = {n: [history_frame(DAYS)] for n in ("A", "B", "C")}
    source = make_source(yahoo, batch_size=2, requests_per_hour=2)
    source._limiter = RateLimiter(2, 3600.0, clock=fake.clock, sleep=fake.sleep)

    stamps = []
    download, split_history = yahoo.download, yahoo.split_history
    source._download = lambda tickers, **o: (stamps.append((fake.now, tuple(tickers))), download(tickers, **o))[1]
    source._split_history = lambda ticker: (stamps.append((fake.now, ticker)), split_history(ticker))[1]

    source.fetch(["A", "B", "C"], sessions())

    # Batch [A, B] used the hour's two requests; each split history costs one more.
    assert stamps == [(0.0, ("A", "B")), (3600.0, "A"), (3600.0, "B"), (7200.0, ("C",)), (7200.0, "C")]


def test_share_classes_use_yahoo_spelling(yahoo):
    yahoo.answers = {"BRK-B": [history_frame(DAYS)]}

    result = make_source(yahoo).fetch(["BRK.B"], sessions())

    assert yahoo.calls[0][0] == ["BRK-B"] and yahoo.split_calls == ["BRK-B"]
    assert set(result.bars["symbol"]) == {"BRK.B"} and result.rejections == []


def test_default_download_surfaces_exceptions_for_the_call_only(yahoo, monkeypatch):
    seen = []
    monkeypatch.setattr(yfinance, "download", lambda tickers, **o: seen.append(yfinance.config.debug.hide_exceptions))
    before = yfinance.config.debug.hide_exceptions

    _yfinance_download(["AAPL"], **DOWNLOAD_OPTIONS)

    assert seen == [False] and yfinance.config.debug.hide_exceptions == before


def test_yfinance_is_imported_only_when_used():
    code = textwrap.dedent(
        """
        import sys
        from alphatwin_pipelines.sources.yfinance_source import YFinanceSource
        YFinanceSource()
        assert "yfinance" not in sys.modules, "imported at construction"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
