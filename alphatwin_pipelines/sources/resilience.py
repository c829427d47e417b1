"""Rate limiting, circuit breaking and retrying for the network sources.

Providers fail in two ways worth telling apart from bad data: they say "slow down" (429) or
they do not answer at all (timeouts, resets, 5xx). Both deserve a few retries with growing,
jittered delays. A provider that keeps failing, though, should stop being called for a while,
so a run ends in seconds and falls back to stored data instead of spending an hour in backoff.

Clocks, sleeps and random generators are injectable so tests run on fake time.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class TransientError(Exception):
    """The provider was throttling or unavailable; trying again later may work.

    ``status`` is the HTTP status when there was one (429, 5xx); ``retry_after`` is the
    provider's own hint in seconds, which beats our backoff guess when present.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class CircuitOpenError(Exception):
    """Refused without calling: the provider failed too often and is being left alone."""

    def __init__(self, message: str, *, retry_in_s: float = 0.0):
        super().__init__(message)
        self.retry_in_s = retry_in_s


def parse_retry_after(value: str | float | int | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now, else None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# Class names (anywhere in the MRO) of errors that mean "no answer, try again". Matching by
# name covers requests, curl_cffi, urllib3 and yfinance without importing any of them.
_TRANSIENT_CLASS_NAMES = frozenset({
    "Timeout", "ConnectTimeout", "ReadTimeout", "ConnectionError", "ChunkedEncodingError",
    "RemoteDisconnected", "IncompleteRead", "ProtocolError", "NewConnectionError",
    "ConnectTimeoutError", "ReadTimeoutError", "YFRateLimitError",
    "ResponseError",  # urllib3: its Retry gave up on a 429/5xx status
})
# Failing certificate checks will fail the same way next time.
_PERMANENT_CLASS_NAMES = frozenset({"CertificateVerifyError", "SSLCertVerificationError"})


def is_retryable_status(status: int | None) -> bool:
    return status is not None and (status == 429 or 500 <= status <= 599)


def is_transient_error(exc: BaseException) -> bool:
    """True for throttling and "no answer" failures, False for everything else."""
    if isinstance(exc, CircuitOpenError):
        return False
    if isinstance(exc, TransientError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _PERMANENT_CLASS_NAMES:
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)) or names & _TRANSIENT_CLASS_NAMES:
        return True
    response = getattr(exc, "response", None)
    status = getattr(exc, "status", None) or getattr(response, "status_code", None)
    if isinstance(status, int) and is_retryable_status(status):
        return True
    reason = getattr(exc, "reason", None)  # urllib3.MaxRetryError wraps the real cause
    return isinstance(reason, BaseException) and reason is not exc and is_transient_error(reason)


class RateLimiter:
    """At most ``calls`` acquisitions in any sliding window of ``period_s`` seconds.

    A sliding window (not a fixed bucket) because providers count that way: a fixed bucket
    lets twice the limit through around a bucket edge and earns a 429.
    """

    def __init__(
        self,
        calls: int,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if calls < 1 or period_s <= 0:
            raise ValueError(f"rate limit needs calls >= 1 and period_s > 0, got {calls} per {period_s}s")
        self.calls = int(calls)
        self.period_s = float(period_s)
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, permits: int = 1) -> float:
        """Block until ``permits`` calls fit in the window; returns the seconds waited.

        Sleeping happens outside the lock so other threads can keep checking the window.
        """
        if permits < 1 or permits > self.calls:
            raise ValueError(f"permits must be between 1 and {self.calls}, got {permits}")
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._stamps and self._stamps[0] <= now - self.period_s:
                    self._stamps.popleft()
                excess = len(self._stamps) + permits - self.calls
                if excess <= 0:
                    self._stamps.extend([now] * permits)
                    return waited
                wait = self._stamps[excess - 1] + self.period_s - now
            self._sleep(wait)
            waited += wait


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``reset_after_s``, when exactly one trial call may go through; its outcome closes or
    re-opens the circuit.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = int(failure_threshold)
        self.reset_after_s = float(reset_after_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """Current state; an open circuit whose wait is over reports half-open."""
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_after_s:
                return self.HALF_OPEN
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Raise ``CircuitOpenError`` unless a call may go out now."""
        with self._lock:
            if self._state == self.CLOSED:
                return
            elapsed = self._clock() - self._opened_at
            if self._state == self.OPEN and elapsed >= self.reset_after_s:
                self._state = self.HALF_OPEN
                self._trial_in_flight = False
            if self._state == self.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            retry_in = max(0.0, self.reset_after_s - elapsed) if self._state == self.OPEN else 0.0
            raise CircuitOpenError(
                f"circuit open after {self._failures} consecutive failures; next trial in {retry_in:.1f}s",
                retry_in_s=retry_in,
            )

    def record_success(self) -> None:
        with self._lock:
            self._state = self.CLOSED
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = self.OPEN
                self._opened_at = self._clock()
            self._trial_in_flight = False

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` through the breaker, counting any exception as a failure."""
        self.before_call()
        try:
            result = fn()
        except Exception:
            self.record_failure()
            raise
        self.record_success()
        return result


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "full jitter": attempt n waits uniform(0, base * 2**(n-1)),
    capped at ``max_delay_s``, so many clients throttled together do not retry in lockstep.
    """

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("retry delays must be >= 0")

    def delay_s(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Wait after failed attempt ``attempt`` (1-based).

        A provider's Retry-After replaces our guess, but is still capped at ``max_delay_s``
        so one odd header cannot stall a pipeline run for hours.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        delay = rng.uniform(0.0, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            delay = max(delay, float(retry_after))
        return min(delay, self.max_delay_s)


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[BaseException], bool],
    breaker: CircuitBreaker | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error occurs, or attempts run out.

    Every attempt passes the breaker (which may refuse with ``CircuitOpenError``) and then
    the limiter. Only retryable errors count as breaker failures: a non-retryable error
    means the provider answered, which is what the breaker watches for. When a failure
    opens the circuit, ``CircuitOpenError`` is raised at once (chained to the failure)
    rather than sleeping towards an attempt that would be refused anyway. When attempts
    run out, the last error is re-raised. ``on_retry(attempt, exc, delay)`` runs before
    each sleep.
    """
    rng = rng if rng is not None else random.Random()
    for attempt in range(1, policy.max_attempts + 1):
        if breaker is not None:
            breaker.before_call()
        if limiter is not None:
            limiter.acquire()
        try:
            result = fn()
        except Exception as exc:
            if not is_retryable(exc):
                if breaker is not None:
                    breaker.record_success()
                raise
            if breaker is not None:
                breaker.record_failure()
                if breaker.state == CircuitBreaker.OPEN:
                    raise CircuitOpenError(
                        f"circuit opened after {breaker.consecutive_failures} consecutive failures: {exc}",
                        retry_in_s=breaker.reset_after_s,
                    ) from exc
            if attempt == policy.max_attempts:
                raise
            delay = policy.delay_s(attempt, rng, getattr(exc, "retry_after", None))
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
        else:
            if breaker is not None:
                breaker.record_success()
            return result
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
