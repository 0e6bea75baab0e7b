"""One limit per kind of client stall, one answer for all: ``limits.body_idle_timeout`` owns every wait for
request body bytes (read whole or streamed to the upstream), ``limits.client_idle_timeout`` only the
response; a client too slow is always 408 / ``client_timeout`` with source ``client``.  Raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable

import pytest
from yarl import URL

from collectors.record import ListSink
from gateway.config import Limits
from gateway.server import RunningGateway
from gateway.testing import GLOBEX_KEY, RecordingUpstream, standard_config, wait_for_records


def _head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GLOBEX_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n").encode()


async def _send(gw: RunningGateway, parts: list[bytes], pause: float) -> bytes:
    """Send ``parts`` with ``pause`` seconds between them; everything the gateway answers."""
    u = URL(gw.partner_url)
    assert u.host is not None and u.port is not None
    reader, writer = await asyncio.open_connection(u.host, u.port)
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 20.0)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/upload"])  # body read whole / streamed upstream
async def test_a_pause_under_the_body_idle_limit_is_not_cut_by_the_client_idle_limit(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
    path: str,
) -> None:
    up = await upstream_server()
    limits = dataclasses.replace(Limits(), client_idle_timeout=0.3, body_idle_timeout=10.0)
    gw = await gateway(dataclasses.replace(standard_config(up.url), limits=limits))
    body = b'{"order": {"artisan_id": "a1"}}'
    raw = await _send(gw, [_head(path, len(body)) + body[:10], body[10:]], pause=1.2)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert up.requests[-1].body_size == len(body)


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/upload"])
async def test_a_stalled_body_is_408_client_timeout_whichever_way_it_is_read(
    upstream_server: Callable[..., Awaitable[RecordingUpstream]],
    gateway: Callable[..., Awaitable[RunningGateway]],
    path: str,
) -> None:
    up = await upstream_server()
    sink = ListSink()
    limits = dataclasses.replace(Limits(), client_idle_timeout=30.0, body_idle_timeout=0.5)
    gw = await gateway(dataclasses.replace(standard_config(up.url), limits=limits), sink=sink)
    raw = await _send(gw, [_head(path, 100) + b'{"order":'], pause=0.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), raw[:300]
    err = json.loads(body)["error"]
    assert (err["code"], err["source"]) == ("client_timeout", "client")
    (rec,) = await wait_for_records(sink, 1)
    assert (rec.status, rec.error_type, rec.error_source, rec.request_id) == (
        408, "client_timeout", "client", err["request_id"]
    )
