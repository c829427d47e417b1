"""Daily bars and corporate actions from Polygon.io through the official client.

The free tier allows 5 calls a minute, so the call plan matters most: grouped daily bars
cost one call per session for the whole market, per-ticker aggregates one call per symbol for
the whole range, and we take whichever is fewer. Prices are requested unadjusted (as traded);
splits and dividends come from the reference endpoints, so adjustment can be rebuilt later.

The client (polygon-api-client 1.16.3) builds the URLs, parameters, paging and models, but its
connection pool is replaced by ``_MeteredPool`` because: the client never hands its
connect/read timeouts to urllib3 (a hung server would block forever); its ``BadResponse``
carries only the body, not the status or Retry-After needed to tell 429/5xx from 403; and
every page of a paginated listing is a call against the rate limit, which only the pool sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import pandas as pd
import urllib3

from alphatwin_pipelines.calendar import MARKET_TIMEZONE
from alphatwin_pipelines.schema import to_canonical
from alphatwin_pipelines.sources.base import (
    RULE_CIRCUIT_OPEN,
    RULE_NETWORK,
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
    is_retryable_status,
    is_transient_error,
    parse_retry_after,
)

REFERENCE_PAGE_SIZE = 1000  # the reference endpoints' maximum


class _MeteredPool(urllib3.PoolManager):
    """Rate-limits and counts every HTTP request; turns 429/5xx into ``TransientError``."""

    def __init__(self, *, before_request: Callable[[], object], **pool_options):
        super().__init__(**pool_options)
        self._before_request = before_request
        self._lock = threading.Lock()
        self.sent = 0

    def urlopen(self, method, url, redirect=True, **kw):
        self._before_request()
        with self._lock:
            self.sent += 1
        response = super().urlopen(method, url, redirect=redirect, **kw)
        if is_retryable_status(response.status):
            raise TransientError(
                f"HTTP {response.status} from {urlsplit(url).path}",
                status=response.status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        return response


class PolygonSource(BarSource):
    """Polygon daily bars with rate limiting, retries and a circuit breaker.

    ``requests`` in the result counts HTTP requests actually sent (pages included). A symbol
    is either complete in ``bars`` (with its splits and dividends) or rejected: bars whose
    corporate actions could not be fetched would silently corrupt the adjusted history.
    """

    name = "polygon"

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        *,
        calls_per_minute: int = 5,
        timeout_s: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        failure_threshold: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key or not str(api_key).strip():
            raise SourceConfigError(
                "POLYGON_API_KEY is not set: create a key at https://polygon.io/dashboard/keys and "
                "export POLYGON_API_KEY, or choose another source with ALPHATWIN_SOURCE"
            )
        if calls_per_minute < 1 or timeout_s <= 0:
            raise SourceConfigError("polygon calls_per_minute must be >= 1 and timeout_s > 0")
        import certifi
        from polygon import RESTClient

        options = {"api_key": str(api_key).strip(), "connect_timeout": timeout_s,
                   "read_timeout": timeout_s, "retries": 0}
        if base_url:
            options["base"] = base_url.rstrip("/")
        self._client = RESTClient(**options)
        self._retry = retry
        self._sleep = sleep
        self._breaker = CircuitBreaker(failure_threshold)
        self._limiter = RateLimiter(calls_per_minute, 60.0, sleep=sleep)
        # Same settings as the client's own pool, plus the timeout it forgets; retries=False
        # because call_with_retries decides, and so errors arrive unwrapped.
        self._pool = _MeteredPool(
            before_request=self._limiter.acquire,
            num_pools=10,
            headers=self._client.headers,
            ca_certs=certifi.where(),
            cert_reqs="CERT_REQUIRED",
            retries=False,
            timeout=self._client.timeout,
        )
        self._client.client = self._pool

    def describe(self) -> str:
        return f"polygon ({self._client.BASE})"

    def fetch(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> FetchResult:
        result = FetchResult()
        wanted = unique_symbols(symbols)
        days = session_days(sessions)
        if not wanted or days.empty:
            return result
        sent_before = self._pool.sent
        run = _Run(wanted, days, result)
        try:
            if len(days) <= len(wanted):
                self._fetch_grouped(run)
            else:
                self._fetch_per_ticker(run)
        finally:
            result.requests = self._pool.sent - sent_before
        run.finish()
        return result

    def _fetch_grouped(self, run: _Run) -> None:
        """One call per session for the whole market, then market-wide actions over the range."""
        for day in run.days:
            when = day.strftime("%Y-%m-%d")
            try:
                aggs = self._call(lambda: self._client.get_grouped_daily_aggs(when, adjusted=False))
            except Exception as exc:
                run.fail(run.wanted, exc, f"grouped daily bars for {when}")
                return
            # The endpoint answers for the requested date; its t should agree, and a
            # disagreement is worth a warning but not a guess.
            mismatched = [a for a in aggs if a.timestamp is not None and _exchange_date(a.timestamp) != day]
            if mismatched:
                run.result.warnings.append(
                    f"polygon grouped bars for {when}: {len(mismatched)} result(s) carry another date "
                    f"(e.g. {_exchange_date(mismatched[0].timestamp).date()}); kept under {when}"
                )
            run.add_bars((a.ticker, day, a) for a in aggs if a.ticker)
        if run.rows:
            self._fetch_actions(run, run.wanted, ticker=None)

    def _fetch_per_ticker(self, run: _Run) -> None:
        """One aggregates call per symbol over the range, then that symbol's actions."""
        first, last = (d.strftime("%Y-%m-%d") for d in (run.days[0], run.days[-1]))
        for position, symbol in enumerate(run.wanted):
            try:
                aggs = self._call(lambda: self._client.get_aggs(
                    symbol, 1, "day", first, last, adjusted=False, sort="asc", limit=50000))
            except CircuitOpenError as exc:
                run.fail(run.wanted[position:], exc, f"aggregates for {symbol}")
                return
            except Exception as exc:
                run.fail([symbol], exc, f"aggregates for {symbol}")
                continue
            added = run.add_bars((symbol, _exchange_date(a.timestamp), a) for a in aggs if a.timestamp is not None)
            if added and not self._fetch_actions(run, [symbol], ticker=symbol):
                if run.circuit_open:
                    run.fail(run.wanted[position + 1 :], run.circuit_open, "not attempted")
                    return

    def _fetch_actions(self, run: _Run, symbols: list[str], ticker: str | None) -> bool:
        """Splits and dividends for ``ticker`` (or the whole market) over the run's range."""
        first, last = (d.strftime("%Y-%m-%d") for d in (run.days[0], run.days[-1]))
        what = f"corporate actions for {ticker or 'the market'}"
        try:
            splits = self._call(lambda: list(self._client.list_splits(
                ticker=ticker, execution_date_gte=first, execution_date_lte=last, limit=REFERENCE_PAGE_SIZE)))
            dividends = self._call(lambda: list(self._client.list_dividends(
                ticker=ticker, ex_dividend_date_gte=first, ex_dividend_date_lte=last, limit=REFERENCE_PAGE_SIZE)))
        except Exception as exc:
            run.fail(symbols, exc, what)
            return False
        seen: set[tuple] = set()
        for split in splits:
            key = (split.ticker, split.execution_date, split.split_from, split.split_to)
            if key not in seen and split.split_from and split.split_to:
                seen.add(key)
                run.add_action(split.ticker, split.execution_date, "split_ratio", split.split_to / split.split_from)
        for dividend in dividends:
            key = (dividend.ticker, dividend.ex_dividend_date, dividend.cash_amount,
                   dividend.dividend_type, dividend.pay_date)
            if key not in seen and dividend.cash_amount:
                seen.add(key)
                run.add_action(dividend.ticker, dividend.ex_dividend_date, "dividend", dividend.cash_amount)
        return True

    def _call(self, fn):
        return call_with_retries(fn, policy=self._retry, is_retryable=is_transient_error,
                                 breaker=self._breaker, sleep=self._sleep)


class _Run:
    """Bookkeeping for one fetch: rows by (symbol, date), failures, actions that found no row."""

    def __init__(self, wanted: list[str], days: pd.DatetimeIndex, result: FetchResult):
        self.wanted = wanted
        self.days = days
        self.result = result
        self.rows: dict[tuple[str, pd.Timestamp], dict] = {}
        self.failures: dict[str, Rejection] = {}
        self.circuit_open: CircuitOpenError | None = None
        self.unplaced: list[str] = []
        self._wanted = set(wanted)
        self._days = set(days)
        self._first, self._last = days[0], days[-1]

    def add_bars(self, items) -> int:
        added = 0
        for symbol, day, agg in items:
            symbol = symbol.upper()
            if symbol in self._wanted and day in self._days:
                self.rows[(symbol, day)] = {
                    "symbol": symbol, "date": day, "open": agg.open, "high": agg.high, "low": agg.low,
                    "close": agg.close, "volume": 0 if agg.volume is None else round(agg.volume),
                    "dividend": 0.0, "split_ratio": 1.0, "source": PolygonSource.name,
                }
                added += 1
        return added

    def add_action(self, symbol: str | None, date_text: str | None, column: str, value: float) -> None:
        """Combine actions on one row: splits multiply, dividends (regular + special) add up."""
        if not symbol or not date_text or symbol.upper() not in self._wanted:
            return
        day = pd.Timestamp(date_text)
        if not self._first <= day <= self._last:  # in case the server ignored the date filter
            return
        row = self.rows.get((symbol.upper(), day))
        if row is None:
            self.unplaced.append(f"{symbol.upper()} {column} on {date_text}")
        elif column == "split_ratio":
            row[column] *= float(value)
        else:
            row[column] += float(value)

    def fail(self, symbols: Sequence[str], exc: BaseException, what: str) -> None:
        if isinstance(exc, CircuitOpenError):
            self.circuit_open = exc
            rule, reason = RULE_CIRCUIT_OPEN, f"{what}: {exc}"
        elif is_transient_error(exc):
            rule, reason = RULE_NETWORK, f"{what} failed after retries: {type(exc).__name__}: {exc}"
        else:
            rule, reason = RULE_PROVIDER_ERROR, f"{what}: {type(exc).__name__}: {str(exc)[:300]}"
        for symbol in symbols:  # the first failure explains the symbol best
            rejection = Rejection(source=PolygonSource.name, rule=rule, reason=reason, symbol=symbol)
            self.failures.setdefault(symbol, rejection)

    def finish(self) -> None:
        result = self.result
        result.rejections.extend(self.failures[s] for s in self.wanted if s in self.failures)
        if self.circuit_open is not None:
            skipped = sum(r.rule == RULE_CIRCUIT_OPEN for r in self.failures.values())
            result.warnings.append(
                f"polygon circuit open ({self.circuit_open}); {skipped} symbol(s) not fetched, "
                "fall back to stored data"
            )
        if self.unplaced:
            result.warnings.append(
                f"polygon: {len(self.unplaced)} corporate action(s) fell on dates without a bar and were "
                f"not applied, e.g. {self.unplaced[0]}"
            )
        kept = [row for (symbol, _), row in self.rows.items() if symbol not in self.failures]
        if kept:
            result.bars = to_canonical(pd.DataFrame(kept))


def _exchange_date(epoch_ms: int) -> pd.Timestamp:
    """Polygon's ``t`` (epoch ms) as the New York calendar date, tz-naive."""
    return pd.Timestamp(epoch_ms, unit="ms", tz="UTC").tz_convert(MARKET_TIMEZONE).tz_localize(None).normalize()
