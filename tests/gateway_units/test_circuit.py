"""Circuit breaker transitions with an injected clock."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.circuit import CircuitBreaker
from gateway.config import CircuitBreakerConfig


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


Change = tuple[str, str, str]


def breaker(
    clock: FakeClock, failures: int = 3, cooldown: float = 10.0
) -> tuple[CircuitBreaker, list[Change]]:
    changes: list[Change] = []
    cfg = CircuitBreakerConfig(failures=failures, cooldown=cooldown)

    def on_change(name: str, old: str, new: str) -> None:
        changes.append((name, old, new))

    return CircuitBreaker("orders", cfg, clock=clock, on_change=on_change), changes


def fail(cb: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        cb.before_call()
        cb.record_failure()


def test_starts_closed(clock: FakeClock) -> None:
    cb, changes = breaker(clock)
    assert cb.state == "closed"
    cb.before_call()
    assert changes == []


def test_opens_after_consecutive_failures(clock: FakeClock) -> None:
    cb, changes = breaker(clock, failures=3)
    fail(cb, 2)
    assert cb.state == "closed"
    fail(cb, 1)
    assert cb.state == "open"
    assert changes == [("orders", "closed", "open")]


def test_success_resets_the_count(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=3)
    fail(cb, 2)
    cb.before_call()
    cb.record_success()
    fail(cb, 2)
    assert cb.state == "closed"
    assert cb.consecutive_failures == 2


def test_open_refuses_with_retry_after(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=1, cooldown=10.0)
    fail(cb, 1)
    clock.t += 3.5
    with pytest.raises(errors.CircuitOpen) as info:
        cb.before_call()
    exc = info.value
    assert exc.retry_after == pytest.approx(6.5)
    assert exc.headers["Retry-After"] == "7"
    assert (exc.status, exc.source) == (503, "upstream")


def test_half_open_probe_success_closes(clock: FakeClock) -> None:
    cb, changes = breaker(clock, failures=1, cooldown=10.0)
    fail(cb, 1)
    clock.t += 10.0
    cb.before_call()  # the probe
    assert cb.state == "half_open"
    with pytest.raises(errors.CircuitOpen):
        cb.before_call()  # only one probe at a time
    cb.record_success()
    assert cb.state == "closed"
    cb.before_call()
    cb.before_call()
    assert changes == [
        ("orders", "closed", "open"),
        ("orders", "open", "half_open"),
        ("orders", "half_open", "closed"),
    ]


def test_half_open_probe_failure_reopens_for_full_cooldown(clock: FakeClock) -> None:
    cb, changes = breaker(clock, failures=5, cooldown=10.0)
    fail(cb, 5)
    clock.t += 12.0
    cb.before_call()
    clock.t += 1.0
    cb.record_failure()  # a single failure re-opens from half-open
    assert cb.state == "open"
    clock.t += 9.0
    with pytest.raises(errors.CircuitOpen) as info:
        cb.before_call()
    assert info.value.retry_after == pytest.approx(1.0)
    clock.t += 1.0
    cb.before_call()
    assert cb.state == "half_open"
    assert [c[2] for c in changes] == ["open", "half_open", "open", "half_open"]


def test_results_while_open_are_ignored(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=2, cooldown=10.0)
    cb.before_call()  # a slow call started while closed
    fail(cb, 2)
    assert cb.state == "open"
    cb.record_success()  # the slow call finishes: the circuit stays open
    assert cb.state == "open"
    clock.t += 5.0
    cb.record_failure()  # a late failure does not extend the cool-down
    clock.t += 5.0
    cb.before_call()
    assert cb.state == "half_open"


def test_cancelled_probe_frees_the_slot(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=1, cooldown=10.0)
    fail(cb, 1)
    clock.t += 10.0
    cb.before_call()
    cb.record_cancelled()
    cb.before_call()  # a new probe may go
    with pytest.raises(errors.CircuitOpen):
        cb.before_call()
    assert cb.state == "half_open"


def test_lost_probe_is_replaced_after_a_cooldown(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=1, cooldown=10.0)
    fail(cb, 1)
    clock.t += 10.0
    cb.before_call()  # probe whose outcome never arrives
    clock.t += 9.9
    with pytest.raises(errors.CircuitOpen):
        cb.before_call()
    clock.t += 0.1
    cb.before_call()
    cb.record_success()
    assert cb.state == "closed"


def test_zero_failures_config_means_one(clock: FakeClock) -> None:
    cb, _ = breaker(clock, failures=0)
    fail(cb, 1)
    assert cb.state == "open"


def test_without_callback(clock: FakeClock) -> None:
    cb = CircuitBreaker("x", CircuitBreakerConfig(failures=1, cooldown=1.0), clock=clock)
    fail(cb, 1)
    clock.t += 1.0
    cb.before_call()
    cb.record_success()
    assert cb.state == "closed"
