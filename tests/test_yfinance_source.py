"""YFinanceSource against the real ``yfinance.download`` with only ``Ticker.history`` faked: parsing
the bars, batching, retries, the circuit breaker and the rate limit.

Faking one level down keeps the frame shape honest: download() itself concatenates the
per-ticker frames, reindexes them to the union of dates, swaps the column levels to
(Price, Ticker) and logs per-ticker failures, exactly as it does against Yahoo. Split
histories (``Ticker.splits``) are injected through ``split_history``; nothing calls Yahoo.
Undoing Yahoo's split adjustment is tested in test_yfinance_splits.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yfinance
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFRateLimitError

from alphatwin_pipelines.sources.base import RULE_CIRCUIT_OPEN, RULE_NETWORK, RULE_NO_DATA, RULE_PROVIDER_ERROR
from alphatwin_pipelines.sources.resilience import RateLimiter, RetryPolicy
from alphatwin_pipelines.sources.yfinance_source import DOWNLOAD_OPTIONS, YFinanceSource, _yfinance_download

from fake_yahoo import history_frame
from yfinance_support import (  # noqa: F401  (yahoo is a fixture)
    DAYS,
    FAST_RETRY,
    Missing,
    SleepLog,
    make_source,
    sessions,
    yahoo,
)

# yfinance 1.7 itself trips pandas 3.1's inplace deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")


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
