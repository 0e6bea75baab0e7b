"""Fixtures for content chaos: a real gateway with real telemetry (writer process, embedded ClickHouse under
the test's tmp directory), real upstreams on loopback, raw sockets for bytes no HTTP client would send.

Helpers reach the test modules through the ``content`` fixture (test modules cannot import a conftest under
importlib import mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from collectors.exporter import Telemetry
from gateway.config import Config, SpoolConfig, TelemetryConfig
from gateway.server import RunningGateway, run_gateway
from gateway.testing import ADMIN_TOKEN, client_session, wait_for

SERVICE = "loomgate-content"
ROWS_BY_REQUEST = ("SELECT SpanAttributes['loomgate.request_id'] AS rid, SpanAttributes['server.address'], "
                   "SpanAttributes['user_agent.original'], SpanAttributes['artisan.id'], "
                   "SpanAttributes['http.response.status_code'] FROM otel_traces "
                   "WHERE SpanKind = 'Server' AND rid IN {rids:Array(String)} ORDER BY rid")


def telemetry(data_dir: Path, **changes: Any) -> TelemetryConfig:
    base = TelemetryConfig(data_dir=str(data_dir), batch_window=0.05, ttl_days=0, service_name=SERVICE,
                           spool=SpoolConfig(max_bytes=64 << 20))
    return replace(base, **changes)


def tel_of(gw: RunningGateway) -> Telemetry:
    tel = gw.services.telemetry
    assert isinstance(tel, Telemetry), "the gateway runs without telemetry"
    return tel


async def rows(gw: RunningGateway, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    store = gw.services.store
    assert store is not None
    return (await store.query(sql, params)).rows


async def rows_by_request(gw: RunningGateway, rids: list[str]) -> dict[str, tuple[Any, ...]]:
    return {r[0]: tuple(r[1:]) for r in await rows(gw, ROWS_BY_REQUEST, rids=rids)}


async def settle(gw: RunningGateway) -> None:
    await wait_for(lambda: gw.inflight == 0, 10.0, "no request in flight")
    assert await tel_of(gw).flush(), "telemetry flush timed out"


def raw_request(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as is on a new connection (which it must ask to close); (status, whole answer)."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]), answer


async def send_raw(gw: RunningGateway, data: bytes) -> tuple[int, bytes]:
    host, port = gw.partner_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.to_thread(raw_request, (host, int(port)), data)


async def admin_get(gw: RunningGateway, path: str) -> tuple[int, str]:
    async with client_session() as http, http.get(
            gw.admin_url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
        return r.status, await r.text()


async def admin_json(gw: RunningGateway, path: str) -> tuple[int, Any]:
    status, text = await admin_get(gw, path)
    return status, json.loads(text)


def dead_letters(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "deadletter.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


@pytest.fixture
def content() -> SimpleNamespace:
    return SimpleNamespace(
        SERVICE=SERVICE, telemetry=telemetry, tel_of=tel_of, rows=rows, rows_by_request=rows_by_request,
        settle=settle, send_raw=send_raw, admin_get=admin_get, admin_json=admin_json,
        dead_letters=dead_letters, wait_for=wait_for,
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session() as session:
        yield session


@pytest.fixture
async def telemetry_gateway() -> AsyncIterator[Callable[[Config], Awaitable[RunningGateway]]]:
    """``gw = await telemetry_gateway(config)``: run_gateway with the config's telemetry (no test sink)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: Config) -> RunningGateway:
            assert config.telemetry.enabled
            return await stack.enter_async_context(run_gateway(config))

        yield start
