"""Upstream faults: refused connections, timeouts, broken responses, dying mid-body, circuit breaking."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from gateway.testing import RecordingUpstream, make_upstream, standard_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _error(r: aiohttp.ClientResponse) -> dict:
    assert r.content_type == "application/json"
    return (await r.json())["error"]


def _upstream_with(**handlers: web.RequestHandler) -> RecordingUpstream:
    up = RecordingUpstream()
    for name, handler in handlers.items():
        up.on(f"/v1/misc/{name}", handler)
    return up


async def test_connection_refused_is_502_from_upstream(make_stack) -> None:
    port = _closed_port()
    stack = await make_stack(
        config=lambda url: standard_config(url, upstream=make_upstream("api", f"http://127.0.0.1:{port}"))
    )
    async with stack.request("GET", "/v1/misc/x") as r:
        assert r.status == 502
        err = await _error(r)
        assert (err["code"], err["source"]) == ("upstream_connect_error", "upstream")
        assert str(port) not in err["message"]  # no internal addresses in partner-facing errors
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.error_source, rec.upstream_status) == (
        502,
        "connect_error",
        "upstream",
        0,
    )
    assert rec.upstream == "api" and rec.upstream_span_id and rec.upstream_start_ns >= rec.start_ns


async def test_slow_upstream_is_504(make_stack) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    stack = await make_stack(
        _upstream_with(slow=slow),
        config=lambda url: standard_config(url, upstream=make_upstream("api", url, read=0.3, total=5)),
    )
    async with stack.request("GET", "/v1/misc/slow") as r:
        assert r.status == 504
        err = await _error(r)
        assert (err["code"], err["source"]) == ("upstream_timeout", "upstream")
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type) == (504, "timeout")
    assert 0.25e9 < rec.upstream_duration_ns < 2e9


async def test_total_timeout_is_504(make_stack) -> None:
    async def dribble(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return web.Response(text="x")

    async def slow_headers(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="x")

    stack = await make_stack(
        _upstream_with(dribble=dribble, slow_headers=slow_headers),
        config=lambda url: standard_config(url, upstream=make_upstream("api", url, read=5, total=0.35)),
    )
    async with stack.request("GET", "/v1/misc/dribble") as r:
        assert r.status == 200
    async with stack.request("GET", "/v1/misc/slow_headers") as r:
        assert r.status == 504


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_upstream_dying_mid_body_aborts_the_client_response(make_stack, framing: str) -> None:
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if framing == "content-length":
            resp.content_length = 100_000
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"a" * 20_000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp

    stack = await make_stack(_upstream_with(dies=dies))
    async with stack.request("GET", "/v1/misc/dies") as r:
        assert r.status == 200  # headers had already gone out
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()  # never a complete-looking truncated body
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.error_source, rec.upstream_status) == (
        0,
        "upstream_aborted",
        "upstream",
        200,
    )
    assert 0 < rec.response_body_size <= 20_000


async def test_upstream_closing_before_headers_is_502(make_stack) -> None:
    async def hangup(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    stack = await make_stack(_upstream_with(hangup=hangup))
    async with stack.request("GET", "/v1/misc/hangup") as r:
        assert r.status == 502
        err = await _error(r)
        assert (err["code"], err["source"]) == ("upstream_bad_response", "upstream")


async def test_garbage_from_upstream_is_502() -> None:
    async def garbage_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT-HTTP garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    from gateway.server import run_gateway
    from gateway.testing import ACME_KEY, client_session

    server = await asyncio.start_server(garbage_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = standard_config("", upstream=make_upstream("api", f"http://127.0.0.1:{port}"))
    try:
        async with run_gateway(cfg) as gw, client_session() as http:
            r = await http.get(gw.partner_url + "/v1/misc/x", headers={"X-Api-Key": ACME_KEY})
            assert r.status == 502
            assert (await _error(r))["code"] == "upstream_bad_response"
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------------------------- circuit breaker


class Switch:
    def __init__(self) -> None:
        self.failing = True

    async def handler(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=503, text="overloaded")
        return web.Response(text="fine")


async def test_circuit_opens_after_consecutive_failures_and_recovers_half_open(make_stack) -> None:
    switch = Switch()
    stack = await make_stack(_upstream_with(flaky=switch.handler))  # failures=3, cooldown=0.5 s
    for _ in range(3):
        async with stack.request("GET", "/v1/misc/flaky") as r:
            assert r.status == 503 and await r.text() == "overloaded"  # the upstream's own 503
    hits = stack.up.hits
    async with stack.request("GET", "/v1/misc/flaky") as r:
        assert r.status == 503
        assert int(r.headers["Retry-After"]) >= 1
        err = await _error(r)
        assert (err["code"], err["source"]) == ("circuit_open", "upstream")
    assert stack.up.hits == hits  # refused without calling the upstream
    # a failing half-open probe re-opens the circuit
    await asyncio.sleep(0.6)
    async with stack.request("GET", "/v1/misc/flaky") as r:
        assert await r.text() == "overloaded"
    async with stack.request("GET", "/v1/misc/flaky") as r:
        assert (await _error(r))["code"] == "circuit_open"
    # a successful probe closes it
    switch.failing = False
    await asyncio.sleep(0.6)
    async with stack.request("GET", "/v1/misc/flaky") as r:
        assert r.status == 200
    for _ in range(3):
        async with stack.request("GET", "/v1/misc/flaky") as r:
            assert r.status == 200
    records = await stack.records(10)
    assert [r.error_type for r in records].count("circuit_open") == 2


async def test_connect_errors_open_the_circuit(make_stack) -> None:
    port = _closed_port()
    stack = await make_stack(
        config=lambda url: standard_config(
            url, upstream=make_upstream("api", f"http://127.0.0.1:{port}", failures=2, cooldown=30)
        )
    )
    codes = []
    for _ in range(4):
        async with stack.request("GET", "/v1/misc/x") as r:
            codes.append((r.status, (await _error(r))["code"]))
    assert codes == [(502, "upstream_connect_error")] * 2 + [(503, "circuit_open")] * 2


async def test_plain_500s_do_not_open_the_circuit(make_stack) -> None:
    async def oops(request: web.Request) -> web.Response:
        return web.Response(status=500, text="bug in one request")

    stack = await make_stack(_upstream_with(oops=oops))
    for _ in range(6):
        async with stack.request("GET", "/v1/misc/oops") as r:
            assert r.status == 500 and await r.text() == "bug in one request"
    assert stack.up.hits == 6


async def test_client_abort_mid_response_is_recorded_and_not_blamed_on_upstream(make_stack) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(500):
                await resp.write(b"z" * 65536)
                await asyncio.sleep(0.005)
        except ConnectionError:
            pass
        return resp

    stack = await make_stack(_upstream_with(endless=endless))
    async with stack.request("GET", "/v1/misc/endless") as r:
        await r.content.readexactly(100_000)
        r.close()  # drop the connection mid-body
    rec = (await stack.records(1))[0]
    outcome = (rec.status, rec.error_type, rec.error_source, rec.upstream_status)
    assert outcome == (0, "client_abort", "client", 200)
    breaker = stack.gw.proxy.upstreams["api"].breaker
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
