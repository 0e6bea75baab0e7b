"""Oversized and malformed input: bodies over a route's limit, broken framing, oversized headers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import aiohttp
from yarl import URL

from gateway.config import Limits
from gateway.testing import ACME_KEY, MB, Stack, standard_config

AUTH = f"Authorization: Bearer {ACME_KEY}\r\n".encode()


async def _raw(stack: Stack, data: bytes, *, timeout: float = 10) -> bytes:
    url = URL(stack.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_declared_content_length_over_the_limit_is_413_without_upstream(stack: Stack) -> None:
    async with stack.request("POST", "/v1/misc/big", data=b"x" * (MB + 1)) as r:
        assert r.status == 413
        body = await r.json()
        assert body["error"]["code"] == "payload_too_large"
    assert stack.up.hits == 0
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.error_source) == (413, "payload_too_large", "gateway")


async def test_chunked_body_over_the_limit_is_stopped_while_streaming(stack: Stack) -> None:
    sent = 0

    async def gen() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(40):  # 40 x 64 KiB = 2.5 MiB against a 1 MiB limit
            sent += 65536
            yield b"y" * 65536
            await asyncio.sleep(0)

    async with stack.request("POST", "/v1/misc/big", data=gen()) as r:
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "payload_too_large"
    # the upstream never received a complete request
    assert all(s.body_size < MB + 1 for s in stack.up.requests)
    assert stack.up.hits_where(lambda s: s.body_size > 0) == 0
    rec = (await stack.records(1))[0]
    assert rec.status == 413 and MB < rec.request_body_size < sent


async def test_json_route_buffers_only_up_to_its_limit(stack: Stack) -> None:
    doc = json.dumps({"order": {"artisan_id": "a1"}, "pad": "z" * 70_000}).encode()  # limit is 64 KiB

    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(doc), 8192):
            yield doc[i : i + 8192]

    async with stack.request("POST", "/v1/orders", data=gen()) as r:
        assert r.status == 413
    async with stack.request("POST", "/v1/orders", data=doc) as r:
        assert r.status == 413
    assert stack.up.hits == 0


async def test_malformed_chunked_body_is_400(stack: Stack) -> None:
    raw = await _raw(
        stack,
        b"POST /v1/misc/x HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nZZ\r\nnot-hex\r\n0\r\n\r\n",
    )
    status, body = _status_and_json(raw)
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert stack.up.hits_where(lambda s: s.body_size > 0) == 0


async def test_oversized_header_is_431_json_and_recorded(make_stack) -> None:
    stack = await make_stack(config=lambda url: standard_config(url, limits=Limits(max_field_size=1024)))
    raw = await _raw(
        stack, b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\n" + AUTH + b"X-Huge: " + b"h" * 4000 + b"\r\n\r\n"
    )
    status, body = _status_and_json(raw)
    assert status == 431
    assert body["error"]["code"] == "header_too_large" and body["error"]["source"] == "gateway"
    assert b"hhhh" not in raw  # the offending value is not echoed
    assert stack.up.hits == 0
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.request_id) == (
        431,
        "header_too_large",
        body["error"]["request_id"],
    )


async def test_oversized_credential_header_is_never_echoed(make_stack) -> None:
    stack = await make_stack(config=lambda url: standard_config(url, limits=Limits(max_field_size=512)))
    secret = "sk-" + "s3cr3t" * 200
    raw = await _raw(
        stack, f"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {secret}\r\n\r\n".encode()
    )
    assert _status_and_json(raw)[0] == 431
    assert b"s3cr3t" not in raw


async def test_too_long_request_line_and_too_many_headers_are_431(make_stack) -> None:
    stack = await make_stack(
        config=lambda url: standard_config(url, limits=Limits(max_line_size=512, max_headers=20))
    )
    raw = await _raw(stack, b"GET /v1/misc/" + b"p" * 2000 + b" HTTP/1.1\r\nHost: t\r\n" + AUTH + b"\r\n")
    assert _status_and_json(raw)[0] == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(40))
    raw = await _raw(stack, b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\n" + AUTH + many + b"\r\n")
    assert _status_and_json(raw)[0] == 431
    assert stack.up.hits == 0


async def test_malformed_requests_get_json_400(stack: Stack) -> None:
    for data in (
        b"GARBAGE\r\n\r\n",
        b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\nBad Header Name: v\r\n\r\n",
        b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"POST /v1/misc/x HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    ):
        status, body = _status_and_json(await _raw(stack, data))
        assert status == 400, data
        assert body["error"]["code"] == "bad_request"
    assert stack.up.hits == 0
    records = await stack.records(4)
    assert [r.status for r in records] == [400] * 4


async def test_client_disconnecting_mid_upload_is_recorded_as_client_abort(stack: Stack) -> None:
    url = URL(stack.url)
    _, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"POST /v1/misc/x HTTP/1.1\r\nHost: t\r\n" + AUTH + b"Content-Length: 100000\r\n\r\n")
    writer.write(os.urandom(30_000))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type) == (0, "client_abort")
    assert rec.error_source == "client"


async def test_many_requests_on_one_keep_alive_connection(stack: Stack) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(20):
            async with session.post(
                stack.url + "/v1/misc/k", data=os.urandom(i * 100), headers={"X-Api-Key": ACME_KEY}
            ) as r:
                assert r.status == 200
                assert (await r.json())["body_size"] == i * 100
    assert stack.up.hits == 20


async def test_100_continue_only_after_the_request_passed_its_checks(stack: Stack) -> None:
    url = URL(stack.url)

    async def exchange(path: str, send_body: bool) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: t\r\n".encode()
            + AUTH
            + b"Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        )
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if send_body:
            writer.write(b"hello")
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return first, rest

    first, _ = await exchange("/v1/artisans/a9/listings", send_body=False)
    assert first.startswith(b"HTTP/1.1 403 ")  # refused without ever inviting the body
    first, rest = await exchange("/v1/artisans/a1/listings", send_body=True)
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 200 ") and b'"body_size": 5' in rest
    assert stack.up.hits == 1 and "Expect" not in stack.up.requests[0].headers


async def test_unknown_expectations_are_ignored_and_recorded(stack: Stack) -> None:
    async with stack.request("GET", "/v1/misc/x", headers={"Expect": "tea"}) as r:
        assert r.status == 200
    assert (await stack.records(1))[0].status == 200
