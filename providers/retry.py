"""Bounded retries with jittered exponential backoff, and a client-side rate limit.

Shared by every provider, HTTP or gRPC, so that all outside calls back off the
same way and honour the server's `Retry-After`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Retryable(Exception):
    """Raised by an attempt that may succeed if tried again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    max_retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        # "Full jitter": spreads retries of many replicas instead of syncing them.
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


def call_with_retries(
    attempt: Callable[[], T],
    backoff: Backoff,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `attempt` until it returns, raises a non-Retryable, or retries run out.

    `deadline` is a `time.monotonic()` instant; no retry is started that would
    sleep past it. The last Retryable is re-raised as is.
    """
    for number in range(backoff.max_retries + 1):
        try:
            return attempt()
        except Retryable as exc:
            if number == backoff.max_retries:
                raise
            pause = backoff.delay(number, exc.retry_after)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise
            sleep(pause)
    raise AssertionError("unreachable")


class RateLimiter:
    """A token bucket: at most `rate` calls per second, bursts up to `burst`."""

    def __init__(self, rate: float | None, burst: int = 5) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self._rate is None:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self._rate
            time.sleep(wait)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
