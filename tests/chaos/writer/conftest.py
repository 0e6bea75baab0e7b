"""Fixtures for crash tests of the telemetry writer: a real gateway (partner and admin listeners), a real
upstream on loopback, a real writer process owning an embedded ClickHouse store, and real signals to it.

Helpers reach the test modules through the ``chaos`` fixture (importlib import mode: no conftest imports).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from collectors.exporter import Telemetry
from gateway.config import Config, SpoolConfig, TelemetryConfig
from gateway.server import RunningGateway, run_gateway
from gateway.testing import ACME_KEY, ADMIN_TOKEN, GLOBEX_KEY, client_session, wait_for

# Per request id: how many SERVER spans; and the rollups' call counts next to the span count.
SPANS_PER_REQUEST = ("SELECT SpanAttributes['loomgate.request_id'] AS rid, count() FROM otel_traces "
                     "WHERE SpanKind = 'Server' GROUP BY rid")
ROLLUP_TOTALS = (
    "SELECT (SELECT count() FROM otel_traces WHERE SpanKind = 'Server'), "
    "(SELECT sum(calls) FROM loomgate_calls_1m), (SELECT sum(calls) FROM loomgate_calls_1d), "
    "(SELECT sum(calls) FROM loomgate_upstream_1m), (SELECT sum(calls) FROM loomgate_sla_1m), "
    "(SELECT toUInt64(sum(Count)) FROM otel_metrics_histogram "
    " WHERE MetricName = 'http.server.request.duration')"
)


def telemetry(data_dir: Path, **changes: Any) -> TelemetryConfig:
    base = TelemetryConfig(data_dir=str(data_dir), batch_window=0.1, ttl_days=0, service_name="lg-chaos",
                           spool=SpoolConfig(max_bytes=64 << 20))
    return replace(base, **changes)


def tel_of(gw: RunningGateway) -> Telemetry:
    tel = gw.services.telemetry
    assert isinstance(tel, Telemetry)
    return tel


@dataclass
class Load:
    """Open-loop partner traffic: ``rate`` requests a second until ``stop`` is set or ``limit`` is sent."""

    http: aiohttp.ClientSession
    url: str
    prefix: str
    rate: float
    limit: int
    statuses: dict[str, int]
    stop: asyncio.Event

    async def run(self) -> None:
        start = time.monotonic()
        tasks = []
        for i in range(self.limit):
            await asyncio.sleep(max(0.0, start + i / self.rate - time.monotonic()))
            if self.stop.is_set():
                break
            tasks.append(asyncio.create_task(self._one(f"{self.prefix}-{i:05d}", i)))
        await asyncio.gather(*tasks)

    async def _one(self, rid: str, i: int) -> None:
        key, artisan = (ACME_KEY, "a1") if i % 2 else (GLOBEX_KEY, f"a{i % 7}")
        headers = {"X-Request-Id": rid, "Authorization": f"Bearer {key}"}
        async with self.http.get(f"{self.url}/v1/artisans/{artisan}/listings", headers=headers) as r:
            await r.read()
            self.statuses[rid] = r.status


async def admin_get(http: aiohttp.ClientSession, gw: RunningGateway, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": "application/json"}
    async with http.get(gw.admin_url + path, headers=headers) as r:
        body = await r.read()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, body.decode(errors="replace")


async def settled(gw: RunningGateway) -> None:
    """Every finished request's record acknowledged by a running writer and the spool replayed."""
    tel = tel_of(gw)
    await wait_for(lambda: gw.inflight == 0, 10.0, "no request in flight")

    async def drained() -> bool:
        if not tel.writer_alive:
            return False
        try:
            if not await tel.flush(5.0):
                return False
            st = await tel.writer_status()
        except Exception:
            return False
        return bool(st["healthy"]) and st["spool_segments"] == 0 and st["memory_records"] == 0

    await wait_for(drained, 90.0, "a running writer with the spool replayed")


async def exactly_once(gw: RunningGateway, statuses: dict[str, int]) -> None:
    """Every request answered is in otel_traces exactly once, and every rollup counts each once."""
    store = gw.services.store
    assert store is not None
    assert set(statuses.values()) == {200}, "a partner request failed"
    per_rid = dict((await store.query(SPANS_PER_REQUEST)).rows)
    missing = sorted(set(statuses) - set(per_rid))
    dupes = {rid: n for rid, n in per_rid.items() if n != 1}
    assert not missing, f"{len(missing)} requests have no span, e.g. {missing[:3]}"
    assert not dupes, f"{len(dupes)} requests have duplicate spans, e.g. {list(dupes.items())[:3]}"
    assert set(per_rid) == set(statuses)
    totals = tuple(int(v) for v in (await store.query(ROLLUP_TOTALS)).rows[0])
    assert totals == (len(statuses),) * 6, ("spans, calls_1m, calls_1d, upstream_1m, sla_1m, hist", totals)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session(connector=aiohttp.TCPConnector(limit=100)) as session:
        yield session


@pytest.fixture
async def chaos_gateway() -> AsyncIterator[Callable[[Config], Awaitable[RunningGateway]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config) -> RunningGateway:
            return await stack.enter_async_context(run_gateway(config))

        yield start


@pytest.fixture
def chaos() -> SimpleNamespace:
    return SimpleNamespace(telemetry=telemetry, tel_of=tel_of, Load=Load, admin_get=admin_get,
                           settled=settled, exactly_once=exactly_once, wait_for=wait_for)
