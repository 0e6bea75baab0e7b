"""What passes through the proxy untouched, and what it adds or strips (headers, trace context, framing)."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator

from aiohttp import web
from yarl import URL

from gateway.testing import ACME_KEY, RecordingUpstream, Stack


def _upstream_with(**handlers: web.RequestHandler) -> RecordingUpstream:
    up = RecordingUpstream()
    for name, handler in handlers.items():
        up.on(f"/v1/misc/{name}", handler)
    return up


async def _raw_request(stack: Stack, request: bytes) -> bytes:
    """Send bytes on a fresh connection to the partner listener; everything until it closes."""
    url = URL(stack.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def _head_lines(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[0].split(b"\r\n")


# ------------------------------------------------------------------------------------- status & body


async def test_status_reason_and_error_bodies_from_upstream_pass_through(make_stack) -> None:
    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, reason="Short And Stout", text="no coffee", content_type="text/plain")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="upstream stack trace", content_type="text/plain")

    stack = await make_stack(_upstream_with(teapot=teapot, broken=broken))
    async with stack.request("GET", "/v1/misc/teapot") as r:
        assert (r.status, r.reason) == (418, "Short And Stout")
        assert await r.text() == "no coffee"
    async with stack.request("GET", "/v1/misc/broken") as r:
        assert r.status == 500
        assert await r.text() == "upstream stack trace"  # the upstream's own answer, not a gateway error


async def test_redirects_are_passed_not_followed(make_stack) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v1/misc/target")

    stack = await make_stack(_upstream_with(redirect=redirect))
    async with stack.request("GET", "/v1/misc/redirect") as r:
        assert r.status == 302
        assert r.headers["Location"] == "/v1/misc/target"
    assert [s.path for s in stack.up.requests] == ["/v1/misc/redirect"]


async def test_head_204_304_have_no_body_and_keep_content_length(make_stack) -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Why": "nothing"})

    async def cached(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"v1"'})

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1234, content_type="application/octet-stream")

    stack = await make_stack(_upstream_with(empty=empty, cached=cached, sized=sized))
    async with stack.request("GET", "/v1/misc/empty") as r:
        assert r.status == 204 and r.headers["X-Why"] == "nothing"
        assert await r.read() == b""
    async with stack.request("GET", "/v1/misc/cached", headers={"If-None-Match": '"v1"'}) as r:
        assert r.status == 304 and r.headers["ETag"] == '"v1"'
        assert await r.read() == b""
    assert stack.up.requests[-1].headers["If-None-Match"] == '"v1"'
    async with stack.request("HEAD", "/v1/misc/sized") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == "1234"
        assert await r.read() == b""
    # raw bytes: nothing follows the header block of a HEAD response on a closed connection
    auth = f"Authorization: Bearer {ACME_KEY}\r\n".encode()
    raw = await _raw_request(
        stack, b"HEAD /v1/misc/sized HTTP/1.1\r\nHost: t\r\n" + auth + b"Connection: close\r\n\r\n"
    )
    assert raw.endswith(b"\r\n\r\n")
    assert b"content-length: 1234" in raw.lower()


async def test_content_length_passes_through_and_unknown_length_is_chunked(make_stack) -> None:
    parts = [os.urandom(1000) for _ in range(5)]

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for p in parts:
            await resp.write(p)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    stack = await make_stack(_upstream_with(chunked=chunked))
    async with stack.request("GET", "/v1/misc/chunked") as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in r.headers
        assert await r.read() == b"".join(parts)
    async with stack.request("GET", "/v1/misc/echo") as r:
        body = await r.read()
        assert r.headers["Content-Length"] == str(len(body))
        assert "Transfer-Encoding" not in r.headers


async def test_compressed_body_is_untouched(make_stack) -> None:
    plain = b"handmade ceramics " * 2000
    packed = gzip.compress(plain)

    async def zipped(request: web.Request) -> web.Response:
        resp = web.Response(body=packed, content_type="text/plain")
        resp.headers["Content-Encoding"] = "gzip"
        return resp

    stack = await make_stack(_upstream_with(zipped=zipped))
    async with stack.request("GET", "/v1/misc/zipped", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Length"] == str(len(packed))
        assert await r.read() == packed
    assert stack.up.requests[0].headers["Accept-Encoding"] == "gzip"


async def test_repeated_response_headers_and_set_cookie(make_stack) -> None:
    async def cookies(request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.headers.add("Set-Cookie", "a=1; Path=/")
        resp.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
        resp.headers.add("X-Multi", "one")
        resp.headers.add("X-Multi", "two")
        return resp

    stack = await make_stack(_upstream_with(cookies=cookies))
    async with stack.request("GET", "/v1/misc/cookies") as r:
        assert r.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
        assert r.headers.getall("X-Multi") == ["one", "two"]


async def test_query_string_is_forwarded_byte_for_byte(stack: Stack) -> None:
    query = "a=%7e&b=c+d&&=&x=%2F%20;y&e=%E2%9C%93&e=2&empty"
    async with stack.request("GET", f"/v1/misc/q?{query}") as r:
        assert r.status == 200
    assert stack.up.requests[0].raw_path == f"/v1/misc/q?{query}"


async def test_repeated_request_headers_are_preserved(stack: Stack) -> None:
    auth = f"Authorization: Bearer {ACME_KEY}\r\n".encode()
    raw = await _raw_request(
        stack,
        b"GET /v1/misc/rep HTTP/1.1\r\nHost: t\r\n"
        + auth
        + b"X-Rep: 1\r\nX-Rep: 2\r\nAccept: a/b\r\nConnection: close\r\n\r\n",
    )
    assert b" 200 " in _head_lines(raw)[0]
    seen = stack.up.requests[0].headers
    assert seen.getall("X-Rep") == ["1", "2"]
    assert seen["Accept"] == "a/b"


# ------------------------------------------------------------------------------------ hop-by-hop


async def test_hop_by_hop_request_headers_are_stripped(stack: Stack) -> None:
    auth = f"Authorization: Bearer {ACME_KEY}\r\n".encode()
    raw = await _raw_request(
        stack,
        b"GET /v1/misc/hop HTTP/1.1\r\nHost: t\r\n"
        + auth
        + b"Connection: close, X-Private-Hop\r\nX-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nTrailer: X-Sum\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        b"Proxy-Connection: keep-alive\r\nUpgrade: websocket\r\nX-Kept: yes\r\n\r\n",
    )
    assert b" 200 " in _head_lines(raw)[0]
    seen = stack.up.requests[0].headers
    for name in (
        "X-Private-Hop",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Upgrade",
    ):
        assert name not in seen, name
    assert seen.get("Connection", "keep-alive").lower() in ("keep-alive", "close")
    assert seen["X-Kept"] == "yes"


async def test_hop_by_hop_response_headers_are_stripped(make_stack) -> None:
    async def hoppy(request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.headers["Connection"] = "keep-alive, X-Upstream-Hop"
        resp.headers["X-Upstream-Hop"] = "internal"
        resp.headers["Keep-Alive"] = "timeout=99"
        resp.headers["Proxy-Authenticate"] = "Basic"
        resp.headers["X-End-To-End"] = "kept"
        return resp

    stack = await make_stack(_upstream_with(hoppy=hoppy))
    async with stack.request("GET", "/v1/misc/hoppy") as r:
        assert r.status == 200
        for name in ("X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate"):
            assert name not in r.headers, name
        assert r.headers["X-End-To-End"] == "kept"
        assert r.headers["Via"].endswith("1.1 loomgate")


# ------------------------------------------------------------------------------------- added headers


async def test_forwarded_headers_and_via(stack: Stack) -> None:
    headers = {"X-Forwarded-For": "203.0.113.9", "Via": "1.0 edge"}
    async with stack.request("GET", "/v1/misc/fwd", headers=headers) as r:
        assert r.status == 200
    seen = stack.up.requests[0].headers
    assert seen["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == URL(stack.url).raw_authority
    assert seen["Via"] == "1.0 edge, 1.1 loomgate"
    assert seen["Host"] == URL(stack.up.url).raw_authority  # the upstream's own name


async def test_client_user_agent_accept_encoding_and_content_type_are_not_replaced(stack: Stack) -> None:
    async with stack.request(
        "POST",
        "/v1/misc/ua",
        data=b"raw",
        headers={"User-Agent": "tillpoint/4.2", "Accept-Encoding": "br"},
        skip_auto_headers=["Content-Type", "Accept"],
    ) as r:
        assert r.status == 200
    async with stack.request(
        "GET", "/v1/misc/none", skip_auto_headers=["User-Agent", "Accept-Encoding"]
    ) as r:
        assert r.status == 200
    first, second = stack.up.requests
    assert first.headers["User-Agent"] == "tillpoint/4.2"
    assert first.headers["Accept-Encoding"] == "br"
    assert "Content-Type" not in first.headers and "Accept" not in first.headers
    assert "User-Agent" not in second.headers and "Accept-Encoding" not in second.headers


async def test_request_id_is_reused_when_valid_and_generated_otherwise(stack: Stack) -> None:
    async with stack.request("GET", "/v1/misc/a", headers={"X-Request-Id": "req-123.abc"}) as r:
        assert r.headers["X-Request-Id"] == "req-123.abc"
    async with stack.request("GET", "/v1/misc/b", headers={"X-Request-Id": "bad id with spaces"}) as r:
        generated = r.headers["X-Request-Id"]
        assert generated != "bad id with spaces" and len(generated) >= 16
    async with stack.request("GET", "/v1/misc/c") as r:
        assert r.headers["X-Request-Id"] not in ("", generated)
    async with stack.request("GET", "/nope", headers={"X-Request-Id": "err-1"}) as r:
        assert r.status == 404 and r.headers["X-Request-Id"] == "err-1"
        assert (await r.json())["error"]["request_id"] == "err-1"
    seen = [s.headers["X-Request-Id"] for s in stack.up.requests]
    assert seen[0] == "req-123.abc" and seen[1] == generated


async def test_traceparent_is_continued_with_the_gateway_client_span_as_parent(stack: Stack) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    incoming = f"00-{trace_id}-{parent}-01"
    async with stack.request(
        "GET", "/v1/misc/t", headers={"traceparent": incoming, "tracestate": "v=1"}
    ) as r:
        assert r.status == 200
    rec = (await stack.records(1))[0]
    sent = stack.up.requests[0].headers
    version, got_trace, got_parent, flags = sent["traceparent"].split("-")
    assert (version, got_trace, flags) == ("00", trace_id, "01")
    assert got_parent == rec.upstream_span_id != parent
    assert rec.trace_id == trace_id and rec.parent_span_id == parent
    assert rec.span_id not in (parent, rec.upstream_span_id)
    assert sent["tracestate"] == "v=1"


async def test_invalid_or_missing_traceparent_starts_a_new_trace(stack: Stack) -> None:
    for value in ("garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", None):
        headers = {"traceparent": value} if value else {}
        async with stack.request("GET", "/v1/misc/t", headers=headers) as r:
            assert r.status == 200
    records = await stack.records(3)
    for rec, seen in zip(records, stack.up.requests, strict=True):
        assert rec.parent_span_id == ""
        assert len(rec.trace_id) == 32 and rec.trace_id != "0" * 32
        assert seen.headers["traceparent"] == f"00-{rec.trace_id}-{rec.upstream_span_id}-01"
    assert len({r.trace_id for r in records}) == 3


# ------------------------------------------------------------------------------------ request bodies


async def test_request_content_length_is_kept_and_chunked_uploads_stay_chunked(stack: Stack) -> None:
    payload = os.urandom(200_000)
    async with stack.request("POST", "/v1/misc/sized", data=payload) as r:
        assert (await r.json())["body_size"] == len(payload)

    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 50_000):
            yield payload[i : i + 50_000]

    async with stack.request("POST", "/v1/misc/streamed", data=gen()) as r:
        echoed = await r.json()
    assert echoed["body_size"] == len(payload)
    sized, streamed = stack.up.requests
    assert sized.headers["Content-Length"] == str(len(payload)) and "Transfer-Encoding" not in sized.headers
    assert streamed.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in streamed.headers
    assert sized.body_sha256 == streamed.body_sha256


# ------------------------------------------------------------------------------------ upstream pools


async def test_upstream_connections_are_kept_alive_and_pooled(make_stack) -> None:
    from gateway.testing import make_upstream, standard_config

    inside = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.1)
        inside -= 1
        return web.Response(text="ok")

    stack = await make_stack(
        _upstream_with(slow=slow),
        config=lambda url: standard_config(url, upstream=make_upstream("api", url, pool_size=2)),
    )
    for _ in range(10):
        async with stack.request("GET", "/v1/misc/seq") as r:
            assert r.status == 200
    assert len({s.peer for s in stack.up.requests}) == 1  # one keep-alive connection reused

    async def call() -> int:
        async with stack.request("GET", "/v1/misc/slow") as r:
            return r.status

    assert await asyncio.gather(*(call() for _ in range(6))) == [200] * 6
    assert most == 2  # never more than pool_size connections to the upstream
    assert len({s.peer for s in stack.up.requests}) <= 2


async def test_upstream_cookies_are_not_kept_by_the_gateway(make_stack) -> None:
    async def login(request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.set_cookie("session", "upstream-secret")
        return resp

    stack = await make_stack(_upstream_with(login=login))
    async with stack.request("GET", "/v1/misc/login") as r:
        assert "session=upstream-secret" in r.headers["Set-Cookie"]
    async with stack.request("GET", "/v1/misc/after") as r:
        assert r.status == 200
    async with stack.request("GET", "/v1/misc/mine", headers={"Cookie": "pref=1"}) as r:
        assert r.status == 200
    _, after, mine = stack.up.requests
    assert "Cookie" not in after.headers  # another partner's next request must not carry it
    assert mine.headers["Cookie"] == "pref=1"  # the client's own cookies pass through
