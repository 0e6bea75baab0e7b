"""Drain, restarts and what runs once with several workers."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections import Counter
from types import SimpleNamespace
from typing import Any

import aiohttp

SLOW = 10
INTERVAL_S = 0.5


async def _until(what: str, check: Any, timeout: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_sigterm_drains_every_worker_and_flushes_telemetry(
    fleet: SimpleNamespace, http: aiohttp.ClientSession,
) -> None:
    gw = await fleet.start(workers=2, drain_timeout="20s")
    slow = [asyncio.ensure_future(fleet.call(http, gw, "/v1/slow", f"drain-{i}")) for i in range(SLOW)]

    async def all_in_flight() -> bool:
        return (await gw.stats(http))["inflight"] == SLOW

    await _until("every slow request in flight", all_in_flight)
    gw.sigterm()
    answers = await asyncio.gather(*slow)
    assert [a.status for a in answers] == [200] * SLOW
    assert len({a.pid for a in answers}) == 2, Counter(a.pid for a in answers)
    assert await gw.wait() == 0, gw.log()
    rows = dict(gw.query("SELECT SpanAttributes['loomgate.request_id'] AS id, count() FROM otel_traces "
                         "WHERE SpanKind = 'Server' AND id LIKE 'drain-%' GROUP BY id"))
    assert rows == {f"drain-{i}": 1 for i in range(SLOW)}


async def test_health_checks_run_once_not_per_worker(
    fleet: SimpleNamespace, http: aiohttp.ClientSession,
) -> None:
    gw = await fleet.start(workers=3, health_interval=f"{int(INTERVAL_S * 1000)}ms")
    await asyncio.sleep(4.0)  # several intervals
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()
    times = [r[0] for r in gw.query("SELECT toFloat64(Timestamp) FROM loomgate_health_checks "
                                    "WHERE Upstream = 'api' ORDER BY Timestamp")]
    assert len(times) >= 4, times
    span = times[-1] - times[0]
    assert len(times) <= span / INTERVAL_S + 2, f"{len(times)} checks in {span:.1f} s"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > INTERVAL_S / 2, f"two checks {min(gaps):.3f} s apart: more than one checker"


async def test_a_killed_worker_is_restarted(fleet: SimpleNamespace, http: aiohttp.ClientSession) -> None:
    gw = await fleet.start(workers=2)
    victim = gw.pids[0]
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> list[int] | None:
        stats = await gw.stats(http)
        pids = [w["pid"] for w in stats["workers"]]
        return pids if stats["worker_restarts"] == 1 and len(pids) == 2 and victim not in pids else None

    pids = await _until("the killed worker replaced", replaced)
    assert "restarting it" in gw.log()

    async def both_serve() -> bool:
        answers = await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"after-{i}") for i in range(20)))
        assert all(a.status == 200 for a in answers)
        return {a.pid for a in answers} == set(pids)

    await _until("both workers serving", both_serve)
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()


async def test_a_killed_writer_is_restarted_once_and_nothing_is_lost_or_doubled(
    fleet: SimpleNamespace, http: aiohttp.ClientSession,
) -> None:
    gw = await fleet.start(workers=2)
    before = await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"w-{i}") for i in range(40)))
    writer = (await gw.stats(http))["telemetry"]["writer_pid"]
    os.kill(writer, signal.SIGKILL)
    during = await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"w-{i}") for i in range(40, 80)))

    async def reconnected() -> bool:
        stats = await gw.stats(http)
        tel = stats["telemetry"]
        return (tel["writer_pid"] != writer and tel["writer_restarts"] == 1
                and all(w["telemetry_connected"] for w in stats["workers"]))

    await _until("every worker connected to a new writer", reconnected)
    after = await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"w-{i}") for i in range(80, 120)))
    assert all(a.status == 200 for a in [*before, *during, *after])

    async def replayed() -> bool:  # what the workers spilled when the writer died is in the store again
        tel = (await gw.stats(http))["telemetry"]
        return tel["spooled"] > 0 and tel["replayed"] >= tel["spooled"]

    await _until("the spool replayed", replayed)
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()
    assert gw.log().count("restarting the telemetry writer") == 1
    rows = dict(gw.query("SELECT SpanAttributes['loomgate.request_id'] AS id, count() FROM otel_traces "
                         "WHERE SpanKind = 'Server' AND id LIKE 'w-%' GROUP BY id"))
    assert rows == {f"w-{i}": 1 for i in range(120)}, gw.log()
