"""Token-bucket maths with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Partner, RateLimit
from gateway.ratelimit import RateLimiter, TokenBucket


def test_burst_then_refused_with_wait() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(100.0) == pytest.approx(0.5)  # one token every 0.5 s


def test_refill_rate() -> None:
    b = TokenBucket(rate=4.0, burst=2)
    b.take(0.0)
    b.take(0.0)
    assert b.take(0.1) == pytest.approx(0.15)  # 0.4 tokens accrued, 0.6 missing at 4/s
    assert b.take(0.25) == 0.0  # 1.0 token by now
    assert b.take(0.25) == pytest.approx(0.25)


def test_refill_capped_at_burst() -> None:
    b = TokenBucket(rate=10.0, burst=5)
    b.take(0.0)
    assert b.tokens == pytest.approx(4.0)
    b.take(1000.0)  # long idle: refill capped at 5, minus this take
    assert b.tokens == pytest.approx(4.0)
    assert [b.take(1000.0) for _ in range(5)] == [0.0] * 4 + [pytest.approx(0.1)]


def test_refused_take_costs_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=1)
    assert b.take(0.0) == 0.0
    for _ in range(10):
        assert b.take(0.5) == pytest.approx(0.5)
    assert b.take(1.0) == 0.0


def test_clock_going_backwards_refills_nothing() -> None:
    b = TokenBucket(rate=1.0, burst=1)
    b.take(10.0)
    assert b.take(5.0) == pytest.approx(1.0)
    assert b.take(10.5) == pytest.approx(0.5)  # measured from 10.0, not from 5.0
    assert b.take(11.0) == 0.0


def test_fractional_rate() -> None:
    b = TokenBucket(rate=0.5, burst=1)
    b.take(0.0)
    assert b.take(0.0) == pytest.approx(2.0)
    assert b.take(1.0) == pytest.approx(1.0)
    assert b.take(2.0) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (float("nan"), 1)])
def test_invalid(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_never_exceeds_rate_plus_burst(rate: float, burst: int, gaps: list[float]) -> None:
    b = TokenBucket(rate, burst)
    now, allowed = 0.0, 0
    for g in gaps:
        now += g
        wait = b.take(now)
        assert wait >= 0.0
        if wait == 0.0:
            allowed += 1
        else:
            assert wait <= 1.0 / rate + 1e-9
    assert allowed <= burst + rate * now + 1e-6


def test_waiting_the_advised_time_succeeds() -> None:
    b = TokenBucket(rate=3.0, burst=1)
    now = 0.0
    b.take(now)
    for _ in range(20):
        wait = b.take(now)
        assert wait > 0
        now += wait + 1e-9
        assert b.take(now) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_per_partner() -> None:
    clock = FakeClock()
    rl = RateLimiter(
        [
            Partner(id="a", api_key_sha256=(), rate_limit=RateLimit(rps=1.0, burst=2)),
            Partner(id="b", api_key_sha256=(), rate_limit=RateLimit(rps=10.0, burst=1)),
        ],
        clock=clock,
    )
    assert rl.check("a") == 0.0
    assert rl.check("a") == 0.0
    assert rl.check("a") == pytest.approx(1.0)
    assert rl.check("b") == 0.0  # partners are isolated
    assert rl.check("b") == pytest.approx(0.1)
    clock.t += 0.1
    assert rl.check("b") == 0.0
    assert rl.check("a") == pytest.approx(0.9)
    with pytest.raises(KeyError):
        rl.check("unknown")
