"""The failed-authentication throttle's bucket and LRU bound, on a hand-driven clock."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.auth_throttle import AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_throttled_until_one_failure_refills() -> None:
    clock = Clock()
    t = AuthThrottle(0.5, 3, 10, clock=clock)
    for _ in range(3):
        t.check("a")
        t.failed("a")
    with pytest.raises(errors.AuthThrottled) as info:
        t.check("a")
    assert info.value.headers["Retry-After"] == "2"  # one failure back at 0.5/s
    clock.now += 1.0
    with pytest.raises(errors.AuthThrottled):
        t.check("a")
    clock.now += 1.0
    t.check("a")  # refilled one
    t.check("b")  # never failed


def test_tracked_addresses_are_bounded_least_recently_failing_first() -> None:
    clock = Clock()
    t = AuthThrottle(0.01, 1, 3, clock=clock)
    for address in ("a", "b", "c"):
        t.failed(address)
    t.failed("a")  # a failed again: b is now the least recent
    t.failed("d")
    assert len(t) == 3
    t.check("b")  # forgotten: a full bucket again
    for address in ("a", "c", "d"):
        with pytest.raises(errors.AuthThrottled):
            t.check(address)


def test_a_full_bucket_is_forgotten() -> None:
    clock = Clock()
    t = AuthThrottle(1.0, 2, 10, clock=clock)
    t.failed("a")
    clock.now += 5.0
    t.check("a")
    assert len(t) == 0
