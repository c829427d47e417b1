"""Rate limiter, circuit breaker and retry loop on fake time."""

from __future__ import annotations

import random
import threading
from collections import deque

import pytest
import requests
import urllib3
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.exceptions import Timeout as CurlTimeout

from alphatwin_pipelines.sources.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    RateLimiter,
    RetryPolicy,
    TransientError,
    call_with_retries,
    is_transient_error,
    parse_retry_after,
)


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Fails with the given errors in order, then returns "ok"."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


# -- RateLimiter ---------------------------------------------------------------------------


def test_limiter_lets_a_full_window_through_then_waits_for_the_oldest_call():
    t = FakeTime()
    limiter = RateLimiter(3, 10.0, clock=t.clock, sleep=t.sleep)

    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == 10.0
    assert t.now == 10.0


def test_limiter_window_slides_rather_than_resetting():
    t = FakeTime()
    limiter = RateLimiter(3, 10.0, clock=t.clock, sleep=t.sleep)
    for at in (0.0, 4.0, 8.0):
        t.now = at
        limiter.acquire()

    t.now = 9.0
    assert limiter.acquire() == pytest.approx(1.0)  # the call at 0.0 leaves at 10.0
    assert limiter.acquire() == pytest.approx(4.0)  # then the one at 4.0, at 14.0


def test_limiter_multiple_permits_wait_for_enough_room():
    t = FakeTime()
    limiter = RateLimiter(4, 60.0, clock=t.clock, sleep=t.sleep)
    limiter.acquire(3)

    t.now = 30.0
    assert limiter.acquire(2) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        limiter.acquire(5)


def test_limiter_is_thread_safe():
    class GrantLog(deque):
        """The limiter's own window, recording the instant of every grant."""

        def extend(self, stamps):
            stamps = list(stamps)
            granted.extend(stamps)
            super().extend(stamps)

    granted: list[float] = []
    limiter = RateLimiter(5, 0.2)
    limiter._stamps = GrantLog()
    threads = [threading.Thread(target=limiter.acquire) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    granted.sort()
    assert len(granted) == 12
    for i in range(len(granted) - 5):  # never 6 grants inside one window
        assert granted[i + 5] - granted[i] >= 0.2


# -- CircuitBreaker ------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only():
    t = FakeTime()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=60.0, clock=t.clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # resets the streak
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == CircuitBreaker.CLOSED

    breaker.record_failure()
    assert breaker.state == CircuitBreaker.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        breaker.before_call()
    assert refused.value.retry_in_s == 60.0


def test_open_breaker_refuses_without_calling():
    t = FakeTime()
    breaker = CircuitBreaker(failure_threshold=1, clock=t.clock)
    with pytest.raises(RuntimeError):
        breaker.call(Flaky(RuntimeError("down")))

    probe = Flaky()
    with pytest.raises(CircuitOpenError):
        breaker.call(probe)
    assert probe.calls == 0


def test_half_open_allows_one_trial_and_success_closes():
    t = FakeTime()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30.0, clock=t.clock)
    breaker.record_failure()
    t.now = 29.9
    assert breaker.state == CircuitBreaker.OPEN

    t.now = 30.0
    assert breaker.state == CircuitBreaker.HALF_OPEN
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the trial is out
    breaker.record_success()
    assert breaker.state == CircuitBreaker.CLOSED
    breaker.before_call()


def test_failed_trial_reopens_for_a_full_period():
    t = FakeTime()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30.0, clock=t.clock)
    for _ in range(3):
        breaker.record_failure()
    t.now = 40.0
    breaker.before_call()
    breaker.record_failure()  # one failure is enough in half-open

    assert breaker.state == CircuitBreaker.OPEN
    t.now = 69.0
    assert breaker.state == CircuitBreaker.OPEN
    t.now = 70.0
    assert breaker.state == CircuitBreaker.HALF_OPEN


# -- RetryPolicy / call_with_retries -------------------------------------------------------


def test_backoff_uses_full_jitter_with_a_seeded_rng():
    t = FakeTime()
    policy = RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=3.0)
    fn = Flaky(TransientError("a"), TransientError("b"), TransientError("c"))

    assert call_with_retries(fn, policy=policy, is_retryable=is_transient_error, sleep=t.sleep,
                             rng=random.Random(42)) == "ok"

    expected = random.Random(42)
    assert t.sleeps == [expected.uniform(0, 1.0), expected.uniform(0, 2.0), expected.uniform(0, 3.0)]
    assert fn.calls == 4


def test_backoff_without_jitter_doubles_up_to_the_cap():
    policy = RetryPolicy(max_attempts=6, base_delay_s=1.0, max_delay_s=10.0, jitter=False)
    assert [policy.delay_s(n, random.Random()) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]


def test_retry_after_hint_replaces_backoff_but_stays_capped():
    t = FakeTime()
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=20.0)
    fn = Flaky(TransientError("429", status=429, retry_after=7.0), TransientError("429", retry_after=500.0))

    call_with_retries(fn, policy=policy, is_retryable=is_transient_error, sleep=t.sleep, rng=random.Random(1))

    assert t.sleeps == [7.0, 20.0]


def test_non_retryable_error_propagates_at_once():
    t = FakeTime()
    fn = Flaky(KeyError("bad field"), TransientError("never reached"))

    with pytest.raises(KeyError):
        call_with_retries(fn, policy=RetryPolicy(), is_retryable=is_transient_error, sleep=t.sleep)
    assert fn.calls == 1 and t.sleeps == []


def test_last_error_is_raised_when_attempts_run_out():
    t = FakeTime()
    fn = Flaky(*(TransientError(f"try {i}") for i in range(1, 4)))
    retries = []

    with pytest.raises(TransientError, match="try 3"):
        call_with_retries(fn, policy=RetryPolicy(max_attempts=3), is_retryable=is_transient_error,
                          sleep=t.sleep, rng=random.Random(0), on_retry=lambda *a: retries.append(a))
    assert fn.calls == 3 and len(t.sleeps) == 2
    assert [(attempt, str(exc)) for attempt, exc, _ in retries] == [(1, "try 1"), (2, "try 2")]
    assert [delay for *_, delay in retries] == t.sleeps


def test_every_attempt_passes_limiter_and_breaker():
    t = FakeTime()
    limiter = RateLimiter(2, 100.0, clock=t.clock, sleep=t.sleep)
    breaker = CircuitBreaker(failure_threshold=10, clock=t.clock)
    fn = Flaky(TransientError("x"), TransientError("y"))
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, jitter=False)

    assert call_with_retries(fn, policy=policy, is_retryable=is_transient_error, breaker=breaker,
                             limiter=limiter, sleep=t.sleep) == "ok"
    # sleeps: backoff 1, backoff 2, then the limiter holds the third call until t=100
    assert t.sleeps == [1.0, 2.0, 97.0]
    assert breaker.state == CircuitBreaker.CLOSED and breaker.consecutive_failures == 0


def test_circuit_opening_mid_retry_stops_without_sleeping():
    t = FakeTime()
    breaker = CircuitBreaker(failure_threshold=2, clock=t.clock)
    fn = Flaky(*(TransientError("503", status=503) for _ in range(5)))

    with pytest.raises(CircuitOpenError) as stopped:
        call_with_retries(fn, policy=RetryPolicy(max_attempts=5), is_retryable=is_transient_error,
                          breaker=breaker, sleep=t.sleep, rng=random.Random(0))
    assert fn.calls == 2 and len(t.sleeps) == 1
    assert isinstance(stopped.value.__cause__, TransientError)

    later = Flaky()
    with pytest.raises(CircuitOpenError):
        call_with_retries(later, policy=RetryPolicy(), is_retryable=is_transient_error, breaker=breaker)
    assert later.calls == 0


def test_non_retryable_errors_do_not_trip_the_breaker():
    breaker = CircuitBreaker(failure_threshold=1)
    with pytest.raises(ValueError):
        call_with_retries(Flaky(ValueError("403")), policy=RetryPolicy(), is_retryable=is_transient_error,
                          breaker=breaker)
    assert breaker.state == CircuitBreaker.CLOSED


# -- classification and headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        TransientError("x"),
        TimeoutError(),
        ConnectionResetError(),
        requests.exceptions.ConnectionError(),
        requests.exceptions.ReadTimeout(),
        CurlTimeout("curl: (28)"),
        CurlConnectionError("curl: (7)"),
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),
        urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.ResponseError("too many 429 error responses")),
        type("YFRateLimitError", (Exception,), {})(),
        type("HTTPish", (Exception,), {"status": 503})(),
    ],
)
def test_transient_errors(exc):
    assert is_transient_error(exc)


@pytest.mark.parametrize(
    "exc",
    [ValueError(), KeyError("x"), FileNotFoundError(), CircuitOpenError("open"), type("HTTPish", (Exception,), {"status": 404})()],
)
def test_permanent_errors(exc):
    assert not is_transient_error(exc)


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
