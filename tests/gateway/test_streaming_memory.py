"""Bodies stream through the gateway: 50 MB up and 50 MB down, gateway RSS (its own process) stays flat."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from gateway.auth import hash_key
from gateway.testing import RecordingUpstream, client_session, start_gateway_process

KEY = "stream-test-key"
SIZE = 50 * (1 << 20)
CHUNK = 1 << 16
RSS_BUDGET = 30 * (1 << 20)


def _chunk(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(4, "big")).digest() * (CHUNK // 32)


def _expected_digest() -> str:
    h = hashlib.sha256()
    for i in range(SIZE // CHUNK):
        h.update(_chunk(i))
    return h.hexdigest()


async def _download(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_length = SIZE
    await resp.prepare(request)
    for i in range(SIZE // CHUNK):
        await resp.write(_chunk(i))
    await resp.write_eof()
    return resp


class RssSampler:
    """Peak RSS of a process, sampled every few milliseconds while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def rss(self) -> int:
        return self.proc.memory_info().rss

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            await asyncio.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self.rss())


def _yaml(upstream_url: str) -> str:
    return f"""
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: 127.0.0.1, port: 0, token: stream-admin-token}}
upstreams:
  - name: api
    url: {upstream_url}
routes:
  - name: blob
    path: /v1/blobs/{{name}}
    methods: [GET, PUT, POST]
    upstream: api
    max_body_size: 100MiB
partners:
  - id: bulk
    api_keys: [{hash_key(KEY)}]
telemetry: {{enabled: false}}
"""


@pytest.fixture
async def blob_upstream() -> AsyncIterator[RecordingUpstream]:
    up = RecordingUpstream()
    up.on("/v1/blobs/download", _download)
    await up.start()
    yield up
    await up.close()


async def test_50mb_upload_and_download_keep_gateway_rss_flat(
    blob_upstream: RecordingUpstream, tmp_path: Path
) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(_yaml(blob_upstream.url))
    gp = await start_gateway_process(str(cfg))
    headers = {"X-Api-Key": KEY}
    expected = _expected_digest()
    try:
        async with client_session() as http:
            # warm up: connection pools, buffers, code paths
            for i in range(5):
                async with http.put(
                    gp.partner_url + "/v1/blobs/warm", data=_chunk(i) * 16, headers=headers
                ) as r:
                    assert r.status == 200
            sampler = RssSampler(gp.pid)
            baseline = sampler.rss()

            async def body() -> AsyncIterator[bytes]:
                for i in range(SIZE // CHUNK):
                    yield _chunk(i)

            with sampler:
                async with http.put(gp.partner_url + "/v1/blobs/upload", data=body(), headers=headers) as r:
                    assert r.status == 200
                    echoed = await r.json()
            assert echoed["body_size"] == SIZE and echoed["body_sha256"] == expected
            upload_growth = sampler.peak - baseline

            with sampler:
                async with http.get(gp.partner_url + "/v1/blobs/download", headers=headers) as r:
                    assert r.status == 200 and r.headers["Content-Length"] == str(SIZE)
                    h = hashlib.sha256()
                    got = 0
                    async for chunk in r.content.iter_chunked(CHUNK):
                        h.update(chunk)
                        got += len(chunk)
                        await asyncio.sleep(0)  # a slower reader than the upstream: back-pressure
            assert got == SIZE and h.hexdigest() == expected
            download_growth = sampler.peak - baseline
    finally:
        await gp.stop()
    assert upload_growth < RSS_BUDGET, f"upload grew gateway RSS by {upload_growth / 2**20:.1f} MiB"
    assert download_growth < RSS_BUDGET, f"download grew gateway RSS by {download_growth / 2**20:.1f} MiB"
