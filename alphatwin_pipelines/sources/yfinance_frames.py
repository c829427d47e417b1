"""What yfinance hands back, read in our terms: download frames, split histories and its
error log (no network here; ``yfinance_source`` does the calling).

Download frames are turned back into bars as traded.

Yahoo scales every price, volume and dividend for all splits up to today, even with
``auto_adjust=False`` (yfinance issues #109, #687): a 2:1 split halves every earlier price,
doubles every earlier volume and halves every earlier dividend. Given the ticker's full split
history, a bar dated ``d`` is restored with the product of the ratios of splits dated after
``d`` (splits after the requested window included: they scaled the window too)::

    raw price    = yahoo price    * factor
    raw volume   = yahoo volume   / factor   (rounded to whole shares)
    raw dividend = yahoo dividend * factor

A split's own row is already in post-split terms (factor excludes it) and keeps its ratio in
``split_ratio``.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

PRICE_FIELDS = ("Open", "High", "Low", "Close")
# download() logs "['AAPL', 'MSFT']: <error>" per distinct error; Ticker.tz logs the network
# cause as "Failed to get ticker 'AAPL' reason: <error>" before history() calls it "delisted".
_SUMMARY_LINE = re.compile(r"(\[[^\]]*\]):\s*(.+)")
_TZ_LINE = re.compile(r"Failed to get ticker '([^']+)' reason: (.+)")
TRANSIENT_TEXT = re.compile(
    r"YFRateLimitError|Too Many Requests|rate.?limit|\b429\b|status_code\s*=\s*(429|5\d\d)"
    r"|\b5\d\d (Server Error|Internal|Bad Gateway|Service Unavailable)|timed? ?out|Timeout"
    r"|ConnectionError|Connection (reset|refused|aborted)|RemoteDisconnected"
    r"|curl: \((5|6|7|28|35|52|55|56)\)",
    re.IGNORECASE,
)


def fields_by_ticker(frame: pd.DataFrame | None, tickers: list[str]) -> dict[str, pd.DataFrame]:
    """Split download()'s (Price, Ticker) columns into one Open/High/... frame per ticker."""
    if frame is None or len(frame.columns) == 0:
        return {}
    if not isinstance(frame.columns, pd.MultiIndex):
        if len(tickers) != 1:
            raise ValueError(f"expected (Price, Ticker) columns for {len(tickers)} tickers, got {list(frame.columns)}")
        frame = pd.concat({tickers[0]: frame}, axis=1)
    ticker_level = 1 if "Close" in frame.columns.get_level_values(0) else 0
    return {
        str(ticker).upper(): frame.xs(ticker, axis=1, level=ticker_level).set_axis(_local_days(frame.index), axis=0)
        for ticker in frame.columns.get_level_values(ticker_level).unique()
    }


def has_prices(fields: pd.DataFrame | None) -> bool:
    return fields is not None and bool(fields.reindex(columns=list(PRICE_FIELDS)).notna().any().any())


def clean_split_history(splits: pd.Series | None) -> pd.Series:
    """``Ticker.splits`` as float ratios on tz-naive exchange dates, oldest first.

    yfinance answers a ticker without splits with an empty ``pd.Series()`` (object dtype)
    and a failed lookup with ``None`` (when it hides exceptions), which is refused here.
    """
    if splits is None:
        raise ValueError("no split history returned")
    if not isinstance(splits, pd.Series):
        raise ValueError(f"split history is a {type(splits).__name__}, not a Series")
    if splits.empty:
        return pd.Series(dtype="float64", index=pd.DatetimeIndex([], dtype="datetime64[ns]"))
    ratios = pd.to_numeric(splits, errors="coerce").astype("float64")
    ratios.index = _local_days(splits.index)
    ratios = ratios[ratios != 0.0]  # Yahoo's "no split"
    bad = ratios[~(np.isfinite(ratios) & (ratios > 0.0))]
    if not bad.empty:
        raise ValueError(f"split history has an invalid ratio {bad.iloc[0]!r} on {bad.index[0].date()}")
    return ratios.groupby(level=0).prod().sort_index()  # two entries on one day compound


def later_split_factor(dates: pd.DatetimeIndex, splits: pd.Series) -> np.ndarray:
    """For each date, the product of the ratios of splits dated strictly after it."""
    ratios = splits.to_numpy(dtype="float64")
    after = np.append(np.cumprod(ratios[::-1])[::-1], 1.0)  # after[k] = prod(ratios[k:])
    position = np.searchsorted(splits.index.to_numpy(dtype="datetime64[ns]"),
                               pd.DatetimeIndex(dates).to_numpy(dtype="datetime64[ns]"), side="right")
    return after[position]


def requested_rows(fields: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Rows with a price, on requested sessions only."""
    prices = fields.reindex(columns=list(PRICE_FIELDS))
    return fields[prices.notna().any(axis=1).to_numpy() & fields.index.isin(days)]


def to_raw_bars(chosen: pd.DataFrame, symbol: str, splits: pd.Series, source: str) -> pd.DataFrame:
    """Canonical as-traded rows for one ticker from its (split-adjusted) Yahoo rows.

    ``splits`` is the cleaned full split history. Raises ``ValueError`` when a split shown in
    the bars disagrees with it, since the restored prices would then be wrong.
    """

    def column(name: str, default: float) -> pd.Series:
        if name not in chosen.columns:
            return pd.Series(default, index=chosen.index, dtype="float64")
        return chosen[name].astype("float64").fillna(default)

    shown = column("Stock Splits", 0.0)
    _check_splits(shown[shown != 0.0], splits.reindex(chosen.index).dropna(), symbol)
    factor = later_split_factor(chosen.index, splits)
    prices = chosen.reindex(columns=list(PRICE_FIELDS)).astype("float64").mul(factor, axis=0)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": chosen.index,
            "open": prices["Open"],
            "high": prices["High"],
            "low": prices["Low"],
            "close": prices["Close"],
            "volume": (column("Volume", 0.0) / factor).round().astype("int64"),
            "dividend": column("Dividends", 0.0) * factor,
            "split_ratio": shown.where(shown != 0.0, 1.0),  # Yahoo writes 0 for "no split"
            "source": source,
        }
    ).reset_index(drop=True)


def _check_splits(in_bars: pd.Series, in_history: pd.Series, symbol: str) -> None:
    """The splits on the returned rows must be exactly the history's splits on those dates."""
    for day in in_bars.index.union(in_history.index):
        shown, known = in_bars.get(day), in_history.get(day)
        if shown is None or known is None or not np.isclose(shown, known, rtol=1e-9, atol=0.0):
            raise ValueError(
                f"{symbol} split on {day.date()}: bars show {shown or 'none'}, split history shows "
                f"{known or 'none'}; cannot restore as-traded prices"
            )


def _local_days(index) -> pd.DatetimeIndex:
    """Exchange-local calendar dates, tz-naive midnight (never converted through UTC)."""
    days = pd.DatetimeIndex(index)
    if days.tz is not None:
        days = days.tz_localize(None)
    return days.normalize().astype("datetime64[ns]")


class _ErrorLog(logging.Handler):
    """Collects yfinance's per-ticker error messages while one call runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.by_ticker: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record must not break the download
            return
        if match := _TZ_LINE.search(message):
            self._add([match.group(1)], match.group(2))
        elif match := _SUMMARY_LINE.search(message):
            try:
                tickers = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                return
            self._add([t for t in tickers if isinstance(t, str)], match.group(2))

    def _add(self, tickers: list[str], error: str) -> None:
        for ticker in tickers:
            key = ticker.upper()
            self.by_ticker[key] = f"{self.by_ticker[key]}; {error.strip()}" if key in self.by_ticker else error.strip()


@contextmanager
def yfinance_errors() -> Iterator[dict[str, str]]:
    """Per-ticker (upper-case) error messages yfinance logs while the block runs."""
    handler = _ErrorLog()
    logger = logging.getLogger("yfinance")
    logger.addHandler(handler)
    try:
        yield handler.by_ticker
    finally:
        logger.removeHandler(handler)
