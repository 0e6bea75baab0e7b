"""Fixtures for ``loomgate serve --workers N``: the real command in a child process, a real upstream on
loopback, real HTTP clients, and rows read from the embedded store once the gateway has exited (a chDB
directory opens in one process at a time).  Helpers reach the test modules through the ``fleet`` fixture.

Workers run with ``LOOMGATE_WORKER_PID_HEADER=1``: every response names the process that served it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.auth import hash_key
from gateway.testing import free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
KEY = "shopsync-key"
TOKEN = "admin-token-for-worker-tests"
SERVING = re.compile(r"serving partners on (\S+):(\d+) with (\d+) workers \(pids ([\d ]+)\), admin on (\S+)")
SLOW_S = 1.0
QUERY_SCRIPT = """
import json, sys
from collectors.store import Store
store = Store(sys.argv[1], "otel")
print(json.dumps(store.query(sys.argv[2]).rows, default=str))
store.close()
"""


def config_yaml(data_dir: Path, upstream: str, *, admin_port: int, rps: float = 10000, burst: int = 10000,
                drain_timeout: str = "10s", health_interval: str = "") -> str:
    health = (f"    health_check: {{interval: {health_interval}, timeout: 500ms, path: /fast}}\n"
              if health_interval else "")
    return f"""\
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: 127.0.0.1, port: {admin_port}, token: {TOKEN}}}
limits:
  drain_timeout: {drain_timeout}
upstreams:
  - name: api
    url: {upstream}
{health}routes:
  - name: fast
    path: /v1/fast
    methods: [GET]
    upstream: api
    upstream_path: /fast
  - name: slow
    path: /v1/slow
    methods: [GET]
    upstream: api
    upstream_path: /slow
partners:
  - id: shopsync
    api_keys: [{hash_key(KEY)}]
    artisans: "*"
    rate_limit: {{rps: {rps}, burst: {burst}}}
telemetry:
  store: chdb://{data_dir}/clickhouse
  data_dir: {data_dir}
  batch_window: 100ms
  ttl: 0
"""


@dataclass
class Gateway:
    proc: asyncio.subprocess.Process
    partner_url: str
    admin_url: str
    pids: list[int]
    data_dir: Path
    stderr: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 120.0) -> int:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10.0)
        return rc

    def log(self) -> str:
        return "".join(self.stderr)

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.admin_url + "/api/stats",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """SQL against the store once the gateway has exited, in a child process: chDB opens one data
        directory per process, and the test process may have opened another one already."""
        assert self.proc.returncode is not None, "the store belongs to the running gateway"
        out = subprocess.run([sys.executable, "-c", QUERY_SCRIPT, f"chdb://{self.data_dir}/clickhouse", sql],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return [tuple(row) for row in json.loads(out.stdout)]


async def start_gateway(config_path: Path, data_dir: Path, workers: int, timeout: float = 120.0) -> Gateway:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOMGATE_WORKER_PID_HEADER": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path), "--workers", str(workers),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=env)
    assert proc.stderr is not None
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            raw = await asyncio.wait_for(proc.stderr.readline(), max(0.01, deadline - loop.time()))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("gateway did not start:\n" + "".join(lines)) from None
        if not raw:
            await proc.wait()
            raise AssertionError(f"gateway exited with {proc.returncode}:\n" + "".join(lines))
        lines.append(raw.decode(errors="replace"))
        m = SERVING.search(lines[-1])
        if m:
            break
    gw = Gateway(proc, f"http://{m.group(1)}:{m.group(2)}", m.group(5),
                 [int(p) for p in m.group(4).split()], data_dir, lines)

    async def collect() -> None:
        assert proc.stderr is not None
        async for more in proc.stderr:
            lines.append(more.decode(errors="replace"))

    gw.reader = asyncio.ensure_future(collect())
    return gw


async def upstream_app() -> web.Application:
    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)
        return web.json_response({"slept": SLOW_S})

    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    return app


@dataclass(frozen=True)
class Answer:
    request_id: str
    status: int
    pid: int


async def call(http: aiohttp.ClientSession, gw: Gateway, path: str, request_id: str, *,
               fresh: bool = True) -> Answer:
    """One request; ``fresh``: on a new connection (the kernel picks a worker per connection)."""
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-Id": request_id}
    if fresh:
        headers["Connection"] = "close"
    async with http.get(gw.partner_url + path, headers=headers) as r:
        await r.read()
        return Answer(request_id, r.status, int(r.headers.get("X-Loomgate-Worker", "0")))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, force_close=False)) as s:
        yield s


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    server = await start_server(await upstream_app())
    started: list[Gateway] = []

    async def start(workers: int = 2, **options: Any) -> Gateway:
        data_dir = tmp_path / "data"
        path = tmp_path / "gateway.yaml"
        path.write_text(config_yaml(data_dir, server.url, admin_port=free_port(), **options))
        gw = await start_gateway(path, data_dir, workers)
        started.append(gw)
        return gw

    try:
        yield SimpleNamespace(start=start, call=call, upstream=server.url, token=TOKEN, slow_s=SLOW_S)
    finally:
        for gw in started:
            if gw.proc.returncode is None:
                gw.proc.kill()
                await gw.proc.wait()
        await server.close()
