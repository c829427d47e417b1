"""Shared by the YFinanceSource tests: a fake Yahoo with scripted per-ticker answers behind the real
``yfinance.download`` (only ``Ticker.history`` is faked, tests/fake_yahoo.py), scripted split
histories (``Ticker.splits``), and a source built on it that never sleeps.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yfinance

from alphatwin_pipelines.sources.resilience import RetryPolicy
from alphatwin_pipelines.sources.yfinance_source import YFinanceSource

from fake_yahoo import NY, fake_ticker

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
