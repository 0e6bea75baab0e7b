"""Time spent waiting on a slow client never counts against the upstream: not its timeouts, not its
circuit breaker.  A client that stalls past ``limits.client_idle_timeout`` is cut and recorded as the
client's fault.  Clients are raw sockets that really read (or upload) slowly; every run is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from gateway.config import Limits
from gateway.testing import (
    ACME_KEY,
    GLOBEX_KEY,
    RecordingUpstream,
    make_upstream,
    standard_config,
    wait_for_records,
)

BIG = 8 << 20  # more than the loopback socket buffers hold, so a slow reader really blocks the gateway
TOTAL = 0.5  # the upstream's total and read limits: far less than a slow client takes


def _upstream() -> RecordingUpstream:
    body = bytes(BIG)

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/octet-stream")

    up = RecordingUpstream()
    up.on("/v1/misc/big", big)
    return up


@pytest.fixture
def slow_stack(upstream_server: Any, gateway: Any) -> Any:
    """``gw, up = await slow_stack(client_idle)``: upstream limits of TOTAL; 3 failures open the circuit."""

    async def start(client_idle: float, body_idle: float = 30.0) -> tuple[Any, RecordingUpstream]:
        up = await upstream_server(_upstream())
        config = standard_config(
            up.url,
            upstream=make_upstream("api", up.url, read=TOTAL, total=TOTAL, failures=3, cooldown=30.0),
            limits=Limits(client_idle_timeout=client_idle, body_idle_timeout=body_idle),
        )
        return await gateway(config), up

    return start


def _get(path: str, key: str = ACME_KEY) -> bytes:
    auth = f"Authorization: Bearer {key}"
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\nConnection: close\r\n\r\n".encode()


async def _read_slowly(sock: socket.socket, pause: float, deadline: float) -> int:
    """Read the whole response 64 KiB at a time with a pause between reads; bytes read."""
    loop = asyncio.get_running_loop()
    got = 0
    while time.monotonic() < deadline:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 64 * 1024), deadline - time.monotonic())
        if not chunk:
            return got
        got += len(chunk)
        await asyncio.sleep(pause)
    raise AssertionError("slow download did not finish in time")


async def test_slow_downloads_are_not_cut_by_upstream_limits_nor_open_the_breaker(
    slow_stack: Any, raw: SimpleNamespace
) -> None:
    # A reader that keeps reading can still leave one write blocked for a second or more (the kernel
    # wakes a writer only once a good part of its send buffer is free): the idle limit is set well above.
    gw, _up = await slow_stack(client_idle=10.0)
    loop = asyncio.get_running_loop()
    socks = [await raw.small_window_socket(gw, 32 * 1024) for _ in range(3)]
    try:
        for sock in socks:
            await loop.sock_sendall(sock, _get("/v1/misc/big"))
        started = time.monotonic()
        got = await asyncio.gather(*(_read_slowly(s, 0.01, started + 60) for s in socks))
        took = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert took > 2 * TOTAL  # the clients really were slower than the upstream's limits
    assert all(n > BIG for n in got), got  # every response complete (headers + body)
    records = await wait_for_records(gw.services.sink, 3)
    assert [(r.status, r.error_type, r.response_body_size) for r in records] == [(200, "", BIG)] * 3
    # Another partner is served: the upstream's circuit is still closed.
    reply = await raw.exchange(gw, _get("/v1/misc/x", GLOBEX_KEY))
    assert reply.status == 200


async def test_a_client_that_stops_reading_is_cut_as_a_client_timeout(
    slow_stack: Any, raw: SimpleNamespace
) -> None:
    gw, _up = await slow_stack(client_idle=0.6)
    loop = asyncio.get_running_loop()
    for _ in range(3):  # as many as the breaker's failure threshold
        sock = await raw.small_window_socket(gw)
        try:
            await loop.sock_sendall(sock, _get("/v1/misc/big"))
            assert await loop.sock_recv(sock, 1024)  # the response started, then the client stalls
            before = len(gw.services.sink.records)
            await wait_for_records(gw.services.sink, before + 1, timeout=10.0)
        finally:
            sock.close()
    records = gw.services.sink.records
    assert [(r.status, r.error_type, r.error_source, r.upstream_status) for r in records] == [
        (0, "client_timeout", "client", 200)
    ] * 3
    assert all(0 < r.response_body_size < BIG for r in records)
    reply = await raw.exchange(gw, _get("/v1/misc/x", GLOBEX_KEY))
    assert reply.status == 200  # not 503 circuit_open


async def test_slow_upload_is_the_clients_time_and_a_stalled_one_is_408(
    slow_stack: Any, raw: SimpleNamespace
) -> None:
    gw, up = await slow_stack(client_idle=30.0, body_idle=0.6)  # uploads are the body idle limit's
    head = (f"POST /v1/upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ACME_KEY}\r\n"
            "Content-Length: 40000\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    # Slow but steady: 10 pieces 0.12 s apart, 1.2 s in all, more than twice the upstream's total.
    reader, writer = await asyncio.open_connection(*raw.address(gw))
    try:
        writer.write(head)
        for _ in range(10):
            writer.write(bytes(4000))
            await writer.drain()
            await asyncio.sleep(0.12)
        reply = await asyncio.wait_for(raw.read_reply(reader), 10.0)
    finally:
        writer.close()
    assert reply.status == 200, reply
    assert up.requests[-1].body_size == 40000
    # Stalled: half the body, then nothing.
    for _ in range(3):
        reader, writer = await asyncio.open_connection(*raw.address(gw))
        try:
            writer.write(head + bytes(20000))
            await writer.drain()
            reply = await asyncio.wait_for(raw.read_reply(reader), 10.0)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        assert reply.status == 408
        err = reply.json()["error"]
        assert (err["code"], err["source"]) == ("client_timeout", "client")
    records = await wait_for_records(gw.services.sink, 4)
    assert [(r.status, r.error_type, r.error_source) for r in records] == [
        (200, "", ""), *[(408, "client_timeout", "client")] * 3
    ]
    reply = await raw.exchange(gw, _get("/v1/misc/x", GLOBEX_KEY))
    assert reply.status == 200  # three stalled uploads did not open the upstream's circuit
