"""A fake ``yfinance`` Ticker, so tests run the real ``yfinance.download`` without calling Yahoo.

Faking ``Ticker.history`` only, one level below ``download()``, keeps the frame shape honest:
download() itself concatenates the per-ticker frames, reindexes them to the union of dates, swaps
the column levels to (Price, Ticker) and logs per-ticker failures, exactly as against Yahoo.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import yfinance.multi

NY = "America/New_York"


def fake_ticker(monkeypatch, history: Callable[..., pd.DataFrame]) -> None:
    """Make ``yfinance.download`` build each ticker's frame from ``history(ticker, **kwargs)``.

    ``ticker`` is the fake Ticker: ``ticker.ticker`` is the symbol, and setting
    ``ticker._price_history._last_error`` is how yfinance's own soft failures report.
    """

    class _PriceHistory:
        _last_error = None

    class FakeTicker:
        def __init__(self, ticker):
            self.ticker = ticker
            self._price_history = _PriceHistory()

        def history(self, **kwargs):
            return history(self, **kwargs)

    monkeypatch.setattr(yfinance.multi, "Ticker", FakeTicker)


def history_frame(days, start=100.0, *, splits=None, dividends=None, volume_unit=1_000_000) -> pd.DataFrame:
    """A frame shaped like Ticker.history(auto_adjust=False, actions=True) for a US stock."""
    index = pd.DatetimeIndex(pd.to_datetime(days)).tz_localize(NY)
    index.name = "Date"
    n = len(days)
    close = start + np.arange(n, dtype="float64")
    frame = pd.DataFrame(
        {
            "Open": close - 0.5, "High": close + 1.0, "Low": close - 1.0, "Close": close,
            "Adj Close": close * 0.99, "Volume": np.arange(1, n + 1, dtype="int64") * volume_unit,
            "Dividends": 0.0, "Stock Splits": 0.0,
        },
        index=index,
    )
    for day, ratio in (splits or {}).items():
        frame.loc[pd.Timestamp(day, tz=NY), "Stock Splits"] = ratio
    for day, cash in (dividends or {}).items():
        frame.loc[pd.Timestamp(day, tz=NY), "Dividends"] = cash
    return frame
