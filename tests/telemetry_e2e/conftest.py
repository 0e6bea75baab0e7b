"""Fixtures for telemetry tests through the real gateway: HTTP in, rows in ClickHouse out.

Every gateway here runs with telemetry on: its writer subprocess owns an embedded ClickHouse store (chDB)
under the test's tmp directory.  Upstreams are real aiohttp servers on loopback, the client is a real HTTP
client, and the tests look only at public behaviour: HTTP answers, ``Telemetry.counters()`` and SQL through
``gw.services.store``.  Helpers reach the test modules through the ``e2e`` fixture (test modules cannot
import this conftest under importlib import mode).
"""

from __future__ import annotations

import contextlib
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from yarl import URL

from collectors.exporter import Telemetry
from collectors.store import AsyncStore
from gateway.config import Config, SpoolConfig, TelemetryConfig
from gateway.server import RunningGateway, run_gateway
from gateway.testing import client_session, wait_for

SERVICE = "loomgate-e2e"
SERVER_ROWS = "SELECT count() FROM otel_traces WHERE SpanKind = 'Server'"
SERVER_IDS = "SELECT uniqExact(SpanId) FROM otel_traces WHERE SpanKind = 'Server'"


def telemetry(data_dir: Path, *, spool_max_bytes: int = 64 << 20, **changes: Any) -> TelemetryConfig:
    """Telemetry into an embedded store under ``data_dir``; short batch window so tests do not wait."""
    base = TelemetryConfig(data_dir=str(data_dir), batch_window=0.05, ttl_days=0, service_name=SERVICE,
                           spool=SpoolConfig(max_bytes=spool_max_bytes))
    return replace(base, **changes)


def with_limits(config: Config, **changes: Any) -> Config:
    return replace(config, limits=replace(config.limits, **changes))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tel_of(gw: RunningGateway) -> Telemetry:
    tel = gw.services.telemetry
    assert isinstance(tel, Telemetry), "the gateway runs without telemetry"
    return tel


def store_of(gw: RunningGateway) -> AsyncStore:
    store = gw.services.store
    assert store is not None, "the gateway's telemetry has no store"
    return store


async def rows(gw: RunningGateway, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return (await store_of(gw).query(sql, params)).rows


async def scalar(gw: RunningGateway, sql: str, **params: Any) -> Any:
    return (await rows(gw, sql, **params))[0][0]



async def settle(gw: RunningGateway) -> None:
    """Every finished request's record cut and acknowledged by the writer (inserted or spooled).

    A record is submitted right after the response is written, so the client may hold the answer before
    the record exists: wait for no request in flight first (the count drops just before the submit).
    """
    await wait_for(lambda: gw.inflight == 0, 10.0, "no request in flight")
    assert await tel_of(gw).flush(), "telemetry flush timed out"


async def spool_drained(gw: RunningGateway) -> bool:
    st = await tel_of(gw).writer_status()
    return bool(st["healthy"]) and st["spool_segments"] == 0


def trace_context(rng: random.Random) -> tuple[str, str, str]:
    """(trace id, parent span id, traceparent header) of a sampled incoming W3C trace context."""
    trace_id, parent = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Sent:
    """One request as the client saw it."""

    request_id: str
    status: int
    start_ns: int  # wall clock just before sending
    elapsed_ns: int  # until the whole answer was read
    sent_at: float  # monotonic seconds, for load tests


async def send(http: aiohttp.ClientSession, base: str, method: str, path: str, *, key: str | None,
               request_id: str, headers: dict[str, str] | None = None, key_header: str = "Authorization",
               **kwargs: Any) -> Sent:
    """Send one request with an explicit ``X-Request-Id`` (the gateway reuses it: rows are found by it)."""
    hdrs = {"X-Request-Id": request_id, **(headers or {})}
    if key is not None:
        hdrs[key_header] = f"Bearer {key}" if key_header == "Authorization" else key
    sent_at = time.monotonic()
    t0, m0 = time.time_ns(), time.perf_counter_ns()
    async with http.request(method, URL(base + path, encoded=True), headers=hdrs, allow_redirects=False,
                            **kwargs) as r:
        await r.read()
        status = r.status
    return Sent(request_id, status, t0, time.perf_counter_ns() - m0, sent_at)


@pytest.fixture
def e2e() -> SimpleNamespace:
    return SimpleNamespace(
        SERVICE=SERVICE, SERVER_ROWS=SERVER_ROWS, SERVER_IDS=SERVER_IDS, telemetry=telemetry,
        with_limits=with_limits, closed_port=closed_port, tel_of=tel_of, store_of=store_of, rows=rows,
        scalar=scalar, wait_for=wait_for, settle=settle, spool_drained=spool_drained,
        trace_context=trace_context, median=median, send=send, Sent=Sent,
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A generous pool: load tests keep many requests in flight and must not queue in the client.
    async with client_session(connector=aiohttp.TCPConnector(limit=200)) as session:
        yield session


@pytest.fixture
async def telemetry_gateway() -> AsyncIterator[Callable[[Config], Awaitable[RunningGateway]]]:
    """``gw = await telemetry_gateway(config)``: run_gateway with the config's telemetry (no test sink)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config) -> RunningGateway:
            assert config.telemetry.enabled
            return await stack.enter_async_context(run_gateway(config))

        yield start
