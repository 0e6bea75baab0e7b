"""Start-up and shutdown: drain in-flight requests, refuse new ones, `loomgate serve` and its signals."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.auth import hash_key
from gateway.config import Limits
from gateway.testing import (
    RecordingUpstream,
    client_session,
    standard_config,
    start_gateway_process,
)

KEY = "serve-test-key-1"


def _slow_upstream(seconds: float) -> RecordingUpstream:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text="finished")

    up = RecordingUpstream()
    up.on("/v1/misc/slow", slow)
    return up


async def _wait_for_hits(up: RecordingUpstream, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while up.hits < n:
        assert time.monotonic() < deadline, "the upstream never saw the request"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------ in-process


async def test_drain_lets_in_flight_requests_finish_and_refuses_new_ones(make_stack) -> None:
    stack = await make_stack(_slow_upstream(0.6))
    in_flight = asyncio.ensure_future(stack.request("GET", "/v1/misc/slow"))
    await _wait_for_hits(stack.up, 1)
    drain = asyncio.ensure_future(stack.gw.drain())
    await asyncio.sleep(0.1)
    # stopped accepting: a fresh connection is refused
    async with client_session() as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            await fresh.get(stack.url + "/v1/misc/x")
    resp = await in_flight
    assert resp.status == 200 and await resp.text() == "finished"
    resp.release()
    await asyncio.wait_for(drain, 5)
    assert stack.gw.proxy.inflight == 0
    rec = (await stack.records(1))[0]
    assert rec.status == 200


async def test_drain_timeout_bounds_the_wait(make_stack) -> None:
    stack = await make_stack(
        _slow_upstream(30), config=lambda url: standard_config(url, limits=Limits(drain_timeout=0.3))
    )
    in_flight = asyncio.ensure_future(stack.request("GET", "/v1/misc/slow"))
    await _wait_for_hits(stack.up, 1)
    started = time.monotonic()
    await stack.gw.drain()
    assert time.monotonic() - started < 3.0
    with pytest.raises(aiohttp.ClientError):
        resp = await in_flight
        await resp.read()
    rec = (await stack.records(1))[0]
    assert (rec.status, rec.error_type) == (0, "shutdown")


async def test_readyz_reports_draining(make_stack) -> None:
    stack = await make_stack(_slow_upstream(0.5))
    in_flight = asyncio.ensure_future(stack.request("GET", "/v1/misc/slow"))
    await _wait_for_hits(stack.up, 1)
    drain = asyncio.ensure_future(stack.gw.drain())
    await asyncio.sleep(0.05)
    async with stack.http.get(stack.gw.admin_url + "/readyz") as r:
        assert r.status == 503
        assert "gateway" in (await r.json())["not_ready"]
    (await in_flight).release()
    await drain


# ----------------------------------------------------------------------------------- loomgate serve


def _yaml(upstream_url: str, *, drain_timeout: str) -> str:
    return f"""
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: 127.0.0.1, port: 0, token: serve-admin-token}}
limits: {{drain_timeout: {drain_timeout}}}
upstreams:
  - name: api
    url: {upstream_url}
    timeouts: {{connect: 2s, read: 60s, total: 120s}}
routes:
  - name: misc
    path: /v1/misc/{{name}}
    methods: [GET, POST, PUT]
    upstream: api
    max_body_size: 200MiB
partners:
  - id: serve-partner
    api_keys: [{hash_key(KEY)}]
    rate_limit: {{rps: 10000, burst: 10000}}
telemetry: {{enabled: false}}
"""


@pytest.fixture
async def slow_upstream() -> RecordingUpstream:
    up = await _slow_upstream(1.0).start()
    yield up
    await up.close()


async def test_sigterm_drains_then_exits_zero(slow_upstream: RecordingUpstream, tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(_yaml(slow_upstream.url, drain_timeout="10s"))
    gp = await start_gateway_process(str(cfg))
    try:
        async with client_session() as http:
            async with http.get(gp.admin_url + "/healthz") as r:
                assert r.status == 200
            pending = asyncio.ensure_future(
                http.get(gp.partner_url + "/v1/misc/slow", headers={"X-Api-Key": KEY})
            )
            await _wait_for_hits(slow_upstream, 1)
            gp.proc.send_signal(signal.SIGTERM)
            resp = await pending
            assert resp.status == 200 and await resp.text() == "finished"
            resp.release()
        assert await gp.wait(15) == 0
    finally:
        await gp.stop()
    log = "".join(gp.stderr_lines)
    assert "draining" in log and "stopped" in log
    assert KEY not in log


async def test_second_signal_exits_at_once(slow_upstream: RecordingUpstream, tmp_path: Path) -> None:
    async def very_slow(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(text="too late")

    slow_upstream.on("/v1/misc/very_slow", very_slow)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(_yaml(slow_upstream.url, drain_timeout="60s"))
    gp = await start_gateway_process(str(cfg))
    try:
        async with client_session() as http:
            pending = asyncio.ensure_future(
                http.get(gp.partner_url + "/v1/misc/very_slow", headers={"X-Api-Key": KEY})
            )
            await _wait_for_hits(slow_upstream, 1)
            gp.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            assert gp.proc.returncode is None  # still draining
            started = time.monotonic()
            gp.proc.send_signal(signal.SIGINT)
            rc = await gp.wait(10)
            assert time.monotonic() - started < 5
            assert rc != 0
            with pytest.raises(aiohttp.ClientError):
                await pending
    finally:
        await gp.stop()


async def test_serve_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listeners:\n  partner: {port: not-a-port}\nroutes: 7\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "serve",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    text = err.decode()
    assert str(cfg) in text and "routes" in text


async def test_serve_reports_a_missing_file_with_exit_2(tmp_path: Path) -> None:
    from gateway.server import cli_main

    assert cli_main(["--config", str(tmp_path / "missing.yaml")]) == 2


async def test_a_listener_that_cannot_start_leaves_nothing_behind() -> None:
    import dataclasses
    import socket

    from gateway.config import AdminListener, Listener
    from gateway.server import run_gateway
    from gateway.startup import StartupError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        partner_port = probe.getsockname()[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = dataclasses.replace(
            standard_config("http://127.0.0.1:9"),
            partner_listener=Listener("127.0.0.1", partner_port),
            admin_listener=AdminListener("127.0.0.1", taken.getsockname()[1], "tok"),
        )
        with pytest.raises(StartupError, match=r"listeners\.admin: cannot listen on .*in use"):
            async with run_gateway(cfg):
                pytest.fail("must not start")
    with socket.socket() as again:  # the partner listener was closed again
        again.bind(("127.0.0.1", partner_port))
