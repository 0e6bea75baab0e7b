"""Upstream time limits through the gateway: read is upstream silence (not upload or total time), total
bounds the whole exchange including the response body."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from gateway.config import Config
from gateway.testing import RecordingUpstream, make_upstream, standard_config


def _dribbling(pause: float, chunks: int) -> web.RequestHandler:
    """An upstream handler sending ``chunks`` pieces of a sized body, ``pause`` seconds apart."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 1000 * chunks
        await resp.prepare(request)
        for _ in range(chunks):
            await resp.write(b"d" * 1000)
            await asyncio.sleep(pause)
        return resp

    return handler


def _stack_config(read: float, total: float) -> Callable[[str], Config]:
    return lambda url: standard_config(url, upstream=make_upstream("api", url, read=read, total=total))


async def test_silence_mid_body_over_the_read_limit_aborts_the_response(make_stack) -> None:
    up = RecordingUpstream()
    up.on("/v1/misc/stall", _dribbling(pause=3.0, chunks=2))
    stack = await make_stack(up, config=_stack_config(read=0.3, total=10))
    started = time.monotonic()
    async with stack.request("GET", "/v1/misc/stall") as r:
        assert r.status == 200  # the headers and first chunk went out before the silence
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    assert time.monotonic() - started < 2.5  # cut after the read limit, not when the upstream resumed
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.error_source) == (0, "upstream_aborted", "upstream")
    assert rec.response_body_size == 1000


async def test_a_body_arriving_steadily_may_take_longer_than_the_read_limit(make_stack) -> None:
    up = RecordingUpstream()
    up.on("/v1/misc/steady", _dribbling(pause=0.1, chunks=8))  # 0.8 s in all, never 0.3 s silent
    stack = await make_stack(up, config=_stack_config(read=0.3, total=10))
    async with stack.request("GET", "/v1/misc/steady") as r:
        assert r.status == 200
        assert len(await r.read()) == 8000
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type) == (200, "")


async def test_total_limit_covers_the_response_body(make_stack) -> None:
    up = RecordingUpstream()
    up.on("/v1/misc/long", _dribbling(pause=0.1, chunks=20))  # 2 s of steady body
    stack = await make_stack(up, config=_stack_config(read=5, total=0.5))
    async with stack.request("GET", "/v1/misc/long") as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type, rec.error_source) == (0, "upstream_aborted", "upstream")
    assert 0 < rec.response_body_size < 20_000


async def test_a_slow_upload_is_not_upstream_silence(make_stack) -> None:
    stack = await make_stack(config=_stack_config(read=0.3, total=10))

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(5):  # 0.75 s of upload, well over the read limit
            yield b"u" * 100
            await asyncio.sleep(0.15)

    async with stack.request("POST", "/v1/misc/upload", data=slow_body()) as r:
        assert r.status == 200
        assert (await r.json())["body_size"] == 500
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.request_body_size) == (200, 500)


async def test_upstream_silent_after_an_upload_is_504(make_stack) -> None:
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3)
        return web.Response(text="late")

    up = RecordingUpstream()
    up.on("/v1/misc/slow", slow)
    stack = await make_stack(up, config=_stack_config(read=0.3, total=10))

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000

    async with stack.request("POST", "/v1/misc/slow", data=body()) as r:
        assert r.status == 504
        assert (await r.json())["error"]["code"] == "upstream_timeout"
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type) == (504, "timeout")
    assert 0.25e9 < rec.upstream_duration_ns < 2e9
