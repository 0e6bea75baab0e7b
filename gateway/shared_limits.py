"""Limits shared by the gateway workers of ``loomgate serve --workers N``.

Partner rate limits are one token bucket per partner for the whole gateway, not one per worker: the kernel
spreads connections over workers by a hash, so a partner on one keep-alive connection would otherwise get
only 1/N of its rate, and one on many connections up to N times its burst.  The buckets live in a small
file mapped into every worker (``tokens``, ``last`` as two doubles per partner, in config order); a check
takes a POSIX record lock on the partner's 16 bytes, updates them and unlocks.  The kernel releases a
record lock when its holder dies, so a worker killed mid-check cannot wedge the others (a process-shared
mutex would stay locked).  ``time.monotonic`` is one clock for every process on the machine.  Cost: two
``fcntl`` calls and two struct accesses per request (``bench/workers.py --limiter`` measures it).

The failed-authentication throttle stays per worker, divided: each of N workers allows ``burst/N`` failures
(the remainder spread over the first workers, at least 1 each) refilled at ``rate/N`` per second, so an
address spreading guesses over all workers gets at most the configured burst overall (``N`` when
``burst < N``), and one on a single connection gets its worker's share: stricter, never looser.  Its
addresses are open-ended keys, which a fixed shared table would bound far more coarsely.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.auth_throttle import AuthThrottle
from gateway.config import Limits, Partner

_SLOT = struct.Struct("<dd")  # tokens, last refill (monotonic seconds; negative: never used)


@dataclass(frozen=True, slots=True)
class _Bucket:
    offset: int
    rate: float
    burst: float


def create_buckets(path: str, partners: Sequence[Partner]) -> None:
    """Write the shared bucket file: every partner's bucket full, as a new ``TokenBucket`` starts."""
    data = b"".join(_SLOT.pack(float(p.rate_limit.burst), -1.0) for p in partners) or _SLOT.pack(0.0, -1.0)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class SharedRateLimiter:
    """``gateway.ratelimit.RateLimiter``'s interface over the shared bucket file."""

    def __init__(self, partners: Sequence[Partner], path: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._fd = os.open(path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        if size < _SLOT.size * len(partners):
            os.close(self._fd)
            raise ValueError(f"{path}: shared rate-limit file holds {size} bytes, "
                             f"{len(partners)} partners need {_SLOT.size * len(partners)}")
        self._map = mmap.mmap(self._fd, size)
        self._buckets = {p.id: _Bucket(i * _SLOT.size, float(p.rate_limit.rps), float(p.rate_limit.burst))
                         for i, p in enumerate(partners)}

    def check(self, partner_id: str) -> float:
        """0.0 if the partner may proceed, else Retry-After seconds.  KeyError for an unknown partner."""
        b = self._buckets[partner_id]
        now = self._clock()
        fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT.size, b.offset)
        try:
            tokens, last = _SLOT.unpack_from(self._map, b.offset)
            if last >= 0.0 and now > last:  # a clock that steps back refills nothing
                tokens = min(b.burst, tokens + (now - last) * b.rate)
            if now > last:
                last = now
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / b.rate
            _SLOT.pack_into(self._map, b.offset, tokens, last)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, b.offset)
        return wait

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def share(total: float, workers: int, index: int) -> int:
    """Worker ``index``'s whole share of ``total`` among ``workers`` (remainder to the first ones, >= 1)."""
    whole = int(total)
    return max(1, whole // workers + (1 if index < whole % workers else 0))


def divided_auth_throttle(limits: Limits, workers: int, index: int) -> AuthThrottle:
    """This worker's part of the failed-authentication throttle (see the module docstring)."""
    return AuthThrottle(limits.auth_failure_rate / workers, share(limits.auth_failure_burst, workers, index),
                        limits.auth_tracked_addresses, listener="partner")
