"""Daily bars from Yahoo Finance through ``yfinance.download``.

Yahoo has no official API: it throttles by IP (roughly 2,000 requests an hour) and answers
overload with 429s. ``yfinance.download`` never raises for a ticker that failed; it logs the
error and returns all-NaN columns, which look exactly like a delisted symbol. So every batch
runs with a listener on yfinance's error log, to tell "throttled or unreachable" (retry, then
let the caller fall back to stored data) from "no data" (a real answer).

Yahoo's OHLC, volume and dividends are split-adjusted up to today even with
``auto_adjust=False`` (only ``Adj Close`` also adjusts for dividends; yfinance issues #109,
#687). Stored as raw next to ``split_ratio`` rows they would be adjusted twice, so each
ticker's FULL split history (``yfinance.Ticker(symbol).splits``, one more request per ticker,
through the same rate limiter, retries and circuit breaker) is used to restore the bars as
traded: prices and dividends times the product of the ratios of all later splits, volume
divided by it (see ``yfinance_frames``). A ticker whose split history cannot be fetched, or
disagrees with the splits in its bars, is rejected rather than stored wrong (a network rule
when Yahoo did not answer, so ingestion falls back to stored data).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import pandas as pd

from alphatwin_pipelines.schema import to_canonical
from alphatwin_pipelines.sources.base import (
    RULE_CIRCUIT_OPEN,
    RULE_NETWORK,
    RULE_NO_DATA,
    RULE_PROVIDER_ERROR,
    BarSource,
    FetchResult,
    Rejection,
    SourceConfigError,
    session_days,
    unique_symbols,
)
from alphatwin_pipelines.sources.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RateLimiter,
    RetryPolicy,
    TransientError,
    call_with_retries,
    is_transient_error,
)
from alphatwin_pipelines.sources.yfinance_frames import (
    TRANSIENT_TEXT,
    clean_split_history,
    fields_by_ticker,
    has_prices,
    requested_rows,
    to_raw_bars,
    yfinance_errors,
)

# Passed to every download. multi_level_index=True keeps the (Price, Ticker) columns even
# for a one-ticker batch, so there is a single shape to parse.
DOWNLOAD_OPTIONS = {
    "auto_adjust": False,
    "actions": True,
    "progress": False,
    "threads": False,
    "group_by": "column",
    "multi_level_index": True,
}
_NO_SPLIT_HISTORY = "split history unavailable, so Yahoo's split-adjusted bars cannot be restored to as traded"
_CLASS_SHARE = re.compile(r"^([A-Z0-9]+)\.([A-Z])$")
_YF_CONFIG_LOCK = threading.Lock()

DownloadFn = Callable[..., pd.DataFrame]
SplitHistoryFn = Callable[[str], pd.Series]


class YFinanceSource(BarSource):
    """Batched Yahoo downloads with rate limiting, retries and a circuit breaker.

    ``requests`` in the result counts ``download`` calls plus split-history calls; the rate
    limit counts tickers, because yfinance makes about one HTTP request per ticker and that
    is what Yahoo limits. A symbol is either complete in ``bars`` or rejected, never half there.
    ``split_history(yahoo_symbol)`` returns a ticker's full split history as ratios indexed by
    date (default ``yfinance.Ticker(symbol).splits``); tests inject it.
    """

    name = "yfinance"

    def __init__(
        self,
        *,
        requests_per_hour: int = 2000,
        batch_size: int = 50,
        retry: RetryPolicy = RetryPolicy(),
        failure_threshold: int = 5,
        download: DownloadFn | None = None,
        split_history: SplitHistoryFn | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if batch_size < 1 or requests_per_hour < 1:
            raise SourceConfigError("yfinance batch_size and requests_per_hour must be >= 1")
        if batch_size > requests_per_hour:
            raise SourceConfigError(
                f"yfinance batch_size ({batch_size}) cannot exceed requests_per_hour ({requests_per_hour})"
            )
        self.batch_size = int(batch_size)
        self._retry = retry
        self._download = download
        self._split_history = split_history
        self._sleep = sleep
        self._limiter = RateLimiter(requests_per_hour, 3600.0, sleep=sleep)
        self._breaker = CircuitBreaker(failure_threshold)

    def describe(self) -> str:
        return f"yfinance (batches of {self.batch_size})"

    def fetch(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> FetchResult:
        result = FetchResult()
        wanted = unique_symbols(symbols)
        days = session_days(sessions)
        if not wanted or days.empty:
            return result
        # end is exclusive in yfinance, hence the extra day.
        window = (days[0].strftime("%Y-%m-%d"), (days[-1] + pd.Timedelta(days=1)).strftime("%Y-%m-%d"))
        frames: list[pd.DataFrame] = []
        circuit: CircuitOpenError | None = None
        for first in range(0, len(wanted), self.batch_size):
            batch = wanted[first : first + self.batch_size]
            if circuit is not None:
                _reject(result, batch, RULE_CIRCUIT_OPEN, f"not attempted: {circuit}")
                continue
            downloaded, circuit = self._download_batch(batch, window, days, result)
            for symbol, rows in ((s, downloaded[s]) for s in batch if s in downloaded):  # requested order
                if circuit is not None:
                    _reject(result, [symbol], RULE_CIRCUIT_OPEN, f"split history not fetched: {circuit}")
                    continue
                try:
                    splits = self._fetch_splits(_yahoo_symbol(symbol), result)
                except CircuitOpenError as exc:
                    circuit = exc
                    _reject(result, [symbol], RULE_CIRCUIT_OPEN, f"split history: {exc}")
                    continue
                except Exception as exc:  # one ticker's split history must not cost the others
                    rule = RULE_NETWORK if is_transient_error(exc) else RULE_PROVIDER_ERROR
                    _reject(result, [symbol], rule, f"{_NO_SPLIT_HISTORY}: {type(exc).__name__}: {str(exc)[:300]}")
                    continue
                try:
                    frames.append(to_raw_bars(rows, symbol, splits, self.name))
                except ValueError as exc:  # bars and split history disagree
                    _reject(result, [symbol], RULE_PROVIDER_ERROR, str(exc))
        if circuit is not None:
            skipped = sum(r.rule == RULE_CIRCUIT_OPEN for r in result.rejections)
            result.warnings.append(
                f"yfinance circuit open ({circuit}); {skipped} symbol(s) not fetched, "
                "fall back to stored data"
            )
        if frames:
            result.bars = to_canonical(pd.concat(frames, ignore_index=True))
        return result

    def _download_batch(self, batch, window, days, result: FetchResult):
        """Download one batch, retrying only the tickers that failed transiently.

        Returns the requested rows of each symbol that has prices (still split-adjusted) and
        the ``CircuitOpenError`` if the circuit opened (the symbols left are then rejected).
        """
        symbol_of = {_yahoo_symbol(s): s for s in batch}
        pending = set(symbol_of)
        downloaded: dict[str, pd.DataFrame] = {}

        def attempt() -> None:
            tickers = sorted(pending)
            self._limiter.acquire(len(tickers))
            result.requests += 1
            with yfinance_errors() as errors:
                frame = self._download_fn()(tickers, start=window[0], end=window[1], **DOWNLOAD_OPTIONS)
            by_ticker = fields_by_ticker(frame, tickers)
            throttled: dict[str, str] = {}
            for ticker in tickers:
                fields, error = by_ticker.get(ticker), errors.get(ticker)
                if has_prices(fields):
                    rows = requested_rows(fields, days)
                    if not rows.empty:
                        downloaded[symbol_of[ticker]] = rows
                elif error and TRANSIENT_TEXT.search(error):
                    throttled[ticker] = error
                    continue
                else:
                    reason = f"Yahoo returned no prices for {window[0]}..{days[-1].date()}"
                    _reject(result, [symbol_of[ticker]], RULE_NO_DATA, f"{reason}: {error}" if error else reason)
                pending.discard(ticker)
            if throttled:
                example = next(iter(throttled.values()))
                raise TransientError(f"{len(throttled)} of {len(tickers)} tickers failed: {example}")

        try:
            self._call(attempt)
        except CircuitOpenError as exc:
            _reject(result, [symbol_of[t] for t in sorted(pending)], RULE_CIRCUIT_OPEN, str(exc))
            return downloaded, exc
        except Exception as exc:  # one bad batch must not cost the others
            left = [symbol_of[t] for t in sorted(pending)]
            if is_transient_error(exc):
                _reject(result, left, RULE_NETWORK, f"failed after retries: {type(exc).__name__}: {exc}")
            else:
                _reject(result, left, RULE_PROVIDER_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}")
        return downloaded, None

    def _fetch_splits(self, ticker: str, result: FetchResult) -> pd.Series:
        """The ticker's full split history, cleaned; one rate-limited request per attempt."""

        def attempt() -> pd.Series:
            self._limiter.acquire(1)
            result.requests += 1
            with yfinance_errors() as errors:
                try:
                    return clean_split_history(self._split_history_fn()(ticker))
                except Exception as exc:  # a network cause may be only in the log
                    cause = errors.get(ticker.upper())
                    if not is_transient_error(exc) and cause and TRANSIENT_TEXT.search(cause):
                        raise TransientError(f"{type(exc).__name__}: {exc}; logged cause: {cause}") from exc
                    raise

        return self._call(attempt)

    def _call(self, fn):
        return call_with_retries(fn, policy=self._retry, is_retryable=is_transient_error,
                                 breaker=self._breaker, sleep=self._sleep)

    def _download_fn(self) -> DownloadFn:
        return self._download if self._download is not None else _yfinance_download

    def _split_history_fn(self) -> SplitHistoryFn:
        return self._split_history if self._split_history is not None else _yfinance_splits


def _yfinance_download(tickers: list[str], **options) -> pd.DataFrame:
    """``yfinance.download`` with network exceptions reaching its per-ticker error log.

    download() means to do this itself but sets ``config.network.hide_exceptions`` while
    history() reads ``config.debug.hide_exceptions``, so a timeout on the
    chart request is otherwise reported as "possibly delisted". We set the flag history()
    reads for the duration of the call; download() still catches per ticker.
    """
    with _exceptions_surfaced() as yfinance:
        return yfinance.download(tickers, **options)


def _yfinance_splits(ticker: str) -> pd.Series:
    """``yfinance.Ticker(ticker).splits``: every split Yahoo knows (period="max"), ratios by date.

    An empty ``pd.Series()`` means no splits. With exceptions hidden (yfinance's default) a
    failed fetch returns ``None``, so they are surfaced for the call. A fresh ``Ticker`` per
    call, because a ``Ticker`` caches a failed history as well as a good one.
    """
    with _exceptions_surfaced() as yfinance:
        return yfinance.Ticker(ticker).splits


@contextmanager
def _exceptions_surfaced():
    """The yfinance module with ``config.debug.hide_exceptions`` off until the block ends."""
    import yfinance

    with _YF_CONFIG_LOCK:
        previous = yfinance.config.debug.hide_exceptions
        yfinance.config.debug.hide_exceptions = False
        try:
            yield yfinance
        finally:
            yfinance.config.debug.hide_exceptions = previous


def _reject(result: FetchResult, symbols: Sequence[str], rule: str, reason: str) -> None:
    result.rejections.extend(Rejection(source="yfinance", rule=rule, reason=reason, symbol=s) for s in symbols)


def _yahoo_symbol(symbol: str) -> str:
    """Yahoo spells share classes with a dash (``BRK-B``); the canonical form uses a dot."""
    return _CLASS_SHARE.sub(r"\1-\2", symbol)
