"""Per-partner token-bucket rate limits.

Each partner has a bucket holding up to ``burst`` tokens, refilled continuously at ``rps`` tokens per
second; a request takes one token or is refused with the time until the next one.  All state lives on the
single event loop, so no locks are needed and each check is O(1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.config import Partner


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)  # a new bucket starts full
        self._last: float | None = None

    def take(self, now: float) -> float:
        """Take one token: 0.0 if allowed, else seconds until a token will be available."""
        last = self._last
        if last is not None and now > last:  # a clock that steps back refills nothing
            self._tokens = min(self.burst, self._tokens + (now - last) * self.rate)
        if last is None or now > last:
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    @property
    def tokens(self) -> float:
        """Tokens as of the last ``take`` (for tests and diagnostics)."""
        return self._tokens


class RateLimiter:
    def __init__(self, partners: Sequence[Partner], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets = {p.id: TokenBucket(p.rate_limit.rps, p.rate_limit.burst) for p in partners}

    def check(self, partner_id: str) -> float:
        """0.0 if the partner may proceed, else Retry-After seconds.  KeyError for an unknown partner."""
        return self._buckets[partner_id].take(self._clock())
