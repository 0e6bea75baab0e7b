"""Upstream call limits on a real event loop: which waits they interrupt, which cancellations they claim."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.call_limits import TICK, CallLimits, LimitClock


def _limits(total: float, read: float) -> CallLimits:
    return LimitClock(asyncio.get_running_loop()).limits(total, read)


async def test_read_limit_interrupts_a_wait_for_owed_bytes() -> None:
    limits = _limits(total=10, read=0.05)
    started = time.monotonic()
    limits.begin_wait(owed=True)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(5)
    assert limits.timed_out()
    limits.end_wait()
    limits.close()
    assert 0.05 <= time.monotonic() - started < 0.05 + TICK + 0.5  # late by at most a tick (+ noise)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_time_not_owed_does_not_count_for_the_read_limit() -> None:
    limits = _limits(total=10, read=0.05)
    limits.begin_wait(owed=False)  # e.g. still uploading the request body
    await asyncio.sleep(0.15)
    limits.owed_from_now()
    await asyncio.sleep(0.02)
    limits.end_wait()
    for _ in range(4):  # busy with the client between short waits: never silent for 0.05 s
        await asyncio.sleep(0.06)
        limits.begin_wait(owed=True)
        await asyncio.sleep(0.01)
        limits.end_wait()
    assert not limits.expired
    limits.close()


async def test_total_running_out_outside_a_wait_fails_the_next_wait() -> None:
    limits = _limits(total=0.05, read=10)
    await asyncio.sleep(0.05 + 3 * TICK)  # not waiting for the upstream: nothing is interrupted
    assert limits.expired
    with pytest.raises(TimeoutError):
        limits.begin_wait(owed=True)
    limits.close()


async def test_someone_elses_cancellation_is_not_claimed() -> None:
    async def call() -> str:
        limits = _limits(total=0.1, read=0.1)
        limits.begin_wait(owed=True)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "timeout" if limits.timed_out() else "cancelled"
        finally:
            limits.end_wait()
            limits.close()
        return "done"

    task = asyncio.ensure_future(call())
    await asyncio.sleep(0.01)
    task.cancel()
    assert await task == "cancelled"
    assert await asyncio.ensure_future(call()) == "timeout"


async def test_closed_limits_never_fire() -> None:
    limits = _limits(total=0.02, read=0.02)
    limits.begin_wait(owed=True)
    limits.close()
    await asyncio.sleep(0.02 + 3 * TICK)
    assert not limits.expired


async def test_the_clock_runs_only_while_calls_are_in_flight() -> None:
    clock = LimitClock(asyncio.get_running_loop())
    calls = [clock.limits(total=10, read=10) for _ in range(3)]
    assert clock._handle is not None
    for call in calls:
        call.close()
    await asyncio.sleep(2 * TICK)
    assert clock._handle is None and not clock._calls
