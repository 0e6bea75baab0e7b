"""Failed authentication, throttled per client address.

Each address that presents a wrong credential (an unknown API key on the partner listener, a wrong admin
token as a bearer token or on the ``/login`` form) gets a bucket of ``limits.auth_failure_burst``
failures, refilled at ``limits.auth_failure_rate`` per second.  Once the bucket is empty the address is
refused with 429 ``auth_throttled`` and ``Retry-After`` until it refills -- every request from it, a valid
credential included, so a guesser cannot tell a right guess from a wrong one while throttled.

``check`` runs before any credential is hashed or compared: a throttled guess costs one dictionary
lookup and reveals nothing.  Requests without a credential are not failures (a browser on its way to the
login form, a misconfigured client): they are refused by authentication as before.

Addresses are tracked in LRU order, at most ``limits.auth_tracked_addresses`` of them; the least recently
failing are forgotten first (forgetting one gives it a full bucket, so the bound caps memory, not
protection against a single address).  A bucket that has refilled is dropped at its next check.  Each
listener has its own throttle.  All state lives on the event loop: no locks.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway import errors
from gateway.config import Limits
from gateway.quietlog import RepeatLimiter

log = logging.getLogger("loomgate.auth")


@dataclass(slots=True)
class _Bucket:
    tokens: float  # failures the address may still make
    last: float  # when tokens was last brought up to date


class AuthThrottle:
    """Per-address failure buckets; ``check`` before authenticating, ``failed`` after a wrong credential."""

    def __init__(
        self,
        rate: float,
        burst: int,
        tracked: int,
        *,
        listener: str = "partner",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or burst < 1 or tracked < 1:
            raise ValueError("auth throttle: rate must be positive, burst and tracked at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tracked = tracked
        self._listener = listener
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._limiter = RepeatLimiter(log)
        self.throttled = 0  # requests refused, for tests and diagnostics

    @classmethod
    def from_limits(cls, limits: Limits, listener: str) -> AuthThrottle:
        rate, burst = limits.auth_failure_rate, limits.auth_failure_burst
        return cls(rate, burst, limits.auth_tracked_addresses, listener=listener)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refill(self, address: str, bucket: _Bucket, now: float) -> float:
        if now > bucket.last:  # a clock that steps back refills nothing
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) * self.rate)
            bucket.last = now
        if bucket.tokens >= self.burst:  # nothing left to remember
            del self._buckets[address]
        return bucket.tokens

    def check(self, address: str) -> None:
        """Raise ``AuthThrottled`` when ``address`` has no failures left; O(1), no credential touched."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return
        tokens = self._refill(address, bucket, self._clock())
        if tokens >= 1.0:
            return
        self.throttled += 1
        self._limiter.report(
            f"throttled:{self._listener}",
            f"{self._listener} listener: refused requests from addresses over the failed-authentication "
            f"limit ({self.burst:g} failures, then {self.rate:g}/s)",
            level=logging.INFO,
        )
        wait = (1.0 - tokens) / self.rate
        raise errors.AuthThrottled("too many failed authentication attempts from this address; retry later",
                                   wait)

    def failed(self, address: str) -> None:
        """Count one wrong credential from ``address``."""
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[address] = bucket
            if len(self._buckets) > self.tracked:
                self._buckets.popitem(last=False)
        else:
            if now > bucket.last:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) * self.rate)
                bucket.last = now
            self._buckets.move_to_end(address)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
