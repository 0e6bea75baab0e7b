"""Every worker serves partners, and every request reaches the one store exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import aiohttp

REQUESTS = 120


async def test_every_worker_serves_and_each_request_is_stored_once(
    fleet: SimpleNamespace, http: aiohttp.ClientSession,
) -> None:
    gw = await fleet.start(workers=2)
    assert len(gw.pids) == 2
    answers = []
    for start in range(0, REQUESTS, 20):  # new connections: the kernel spreads them over the workers
        answers += await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"req-{i}")
                                          for i in range(start, start + 20)))
    assert all(a.status == 200 for a in answers), Counter(a.status for a in answers)
    served = Counter(a.pid for a in answers)
    assert set(served) == set(gw.pids), f"served by {served}, workers {gw.pids}"

    stats = await gw.stats(http)
    assert {w["pid"] for w in stats["workers"]} == set(gw.pids)
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()

    rows = gw.query("SELECT SpanAttributes['loomgate.request_id'] AS id, count() FROM otel_traces "
                    "WHERE SpanKind = 'Server' AND id LIKE 'req-%' GROUP BY id")
    counts = dict(rows)
    assert len(counts) == REQUESTS, f"{REQUESTS - len(counts)} requests missing from the store"
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


async def test_admin_sums_every_worker(fleet: SimpleNamespace, http: aiohttp.ClientSession) -> None:
    gw = await fleet.start(workers=2)
    answers = await asyncio.gather(*(fleet.call(http, gw, "/v1/fast", f"sum-{i}") for i in range(40)))
    assert all(a.status == 200 for a in answers)
    per_pid = Counter(a.pid for a in answers)

    async def settled() -> dict:
        for _ in range(100):
            stats = await gw.stats(http)
            by_pid = {w["pid"]: w["requests_total"] for w in stats["workers"]}
            if by_pid == dict(per_pid) or (len(per_pid) < 2 and stats["requests_total"] == 40):
                return stats
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker snapshots never matched {per_pid}: {stats}")

    stats = await settled()
    assert stats["requests_total"] == 40
    assert stats["telemetry"]["writer_pid"] not in gw.pids
    async with http.get(gw.admin_url + "/metrics", headers={"Authorization": f"Bearer {fleet.token}"}) as r:
        text = await r.text()
    assert "loomgate_http_server_received_requests_total 40.0" in text, text[:2000]
    gw.sigterm()
    assert await gw.wait() == 0, gw.log()
