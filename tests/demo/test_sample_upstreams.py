"""Sample upstreams: real aiohttp servers on loopback, driven by real HTTP clients."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.sample_upstreams import (
    FaultPhase,
    FaultPlan,
    FaultState,
    LatencyModel,
    SampleUpstream,
    apply_plan_at,
    run_fault_plan,
)

FAST = LatencyModel(median_ms=0.0)


@pytest.fixture
async def upstream() -> AsyncIterator[SampleUpstream]:
    up = SampleUpstream("inventory", "both", latency=FAST)
    await up.start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


# ------------------------------------------------------------------------------------------ plan logic
def test_plan_state_combines_active_phases_per_upstream() -> None:
    plan = FaultPlan((
        FaultPhase("slow", "orders", "slow", 1.0, 3.0, 0.1),
        FaultPhase("burst", "orders", "errors", 2.0, 4.0, 0.5),
        FaultPhase("down", "inventory", "down", 2.5, 3.5),
    ))
    assert plan.state_for("orders", 0.5) == FaultState()
    assert plan.state_for("orders", 2.2) == FaultState(extra_latency=0.1, error_rate=0.5)
    assert plan.state_for("orders", 3.0) == FaultState(error_rate=0.5)  # end is exclusive
    assert plan.state_for("inventory", 3.0) == FaultState(down=True)
    assert plan.label(0.0) == "steady"
    assert plan.label(2.6) == "slow, burst, down"


def test_demo_plan_scales_to_duration_and_repeats_without_one() -> None:
    short = FaultPlan.demo(10.0)
    assert short.period is None
    assert all(0 < p.start < p.end <= 10.0 for p in short.phases)
    assert {p.kind for p in short.phases} == {"slow", "errors", "down", "die_mid_body"}
    assert short.state_for("orders", 9.9) == FaultState()  # a clean stretch at the end
    forever = FaultPlan.demo(None)
    down = next(p for p in forever.phases if p.kind == "down")
    assert forever.state_for("orders", down.start + 0.1 + 3 * (forever.period or 0)).down


# ------------------------------------------------------------------------------------------- behaviour
async def test_serves_inventory_and_orders(upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    url = upstream.url
    body = {"artisan_id": "a7", "quantity": 12, "source_updated_at": "2025-01-01T00:00:00Z"}
    async with client.put(f"{url}/v1/artisans/a7/listings/L001/inventory", json=body) as r:
        assert r.status == 200
        data = await r.json()
        assert data["quantity"] == 12 and data["source_updated_at"] == "2025-01-01T00:00:00Z"
    async with client.patch(f"{url}/v1/artisans/a7/listings/L001/inventory", json={"delta": -2}) as r:
        assert (await r.json())["quantity"] == 10
    async with client.post(f"{url}/v1/artisans/a7/orders", json={"items": 2}) as r:
        assert r.status == 201
        order_id = (await r.json())["order_id"]
    async with client.get(f"{url}/v1/artisans/a7/orders") as r:
        assert (await r.json())["orders"][0]["order_id"] == order_id
    async with client.get(f"{url}/v1/orders/search", params={"artisan_id": "a7"}) as r:
        assert any(o["order_id"] == order_id for o in (await r.json())["orders"])
    async with client.get(f"{url}/v1/feed/listings", headers={"X-Artisan-Id": "a7"}) as r:
        assert r.status == 200 and (await r.json())["listings"]


async def test_rejects_bad_bodies(upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    path = f"{upstream.url}/v1/artisans/a1/listings/L001/inventory"
    async with client.put(path, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    async with client.put(path, json={"artisan_id": "someone-else", "quantity": 1}) as r:
        assert r.status == 422
    async with client.put(path, json={"quantity": -5}) as r:
        assert r.status == 422


async def test_down_refuses_connections_then_recovers_on_same_port(
        upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    port = upstream.port
    async with client.get(f"{upstream.url}/healthz") as r:  # leaves a pooled keep-alive connection
        assert r.status == 200
    await upstream.set_faults(FaultState(down=True))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with client.get(f"{upstream.url}/healthz") as r:
            await r.read()
    with pytest.raises(ConnectionRefusedError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    await upstream.set_faults(FaultState())
    assert upstream.port == port
    async with client.get(f"{upstream.url}/healthz") as r:
        assert r.status == 200


async def test_slow_period_adds_latency(upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    await upstream.set_faults(FaultState(extra_latency=0.25))
    started = time.perf_counter()
    async with client.get(f"{upstream.url}/healthz") as r:
        assert r.status == 200
    assert time.perf_counter() - started >= 0.25


async def test_error_burst_answers_5xx(upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    await upstream.set_faults(FaultState(error_rate=1.0))
    statuses = []
    for _ in range(20):
        async with client.get(f"{upstream.url}/v1/artisans/a1/listings") as r:
            statuses.append(r.status)
            assert "error" in await r.json()
    assert all(500 <= s <= 599 for s in statuses)
    await upstream.set_faults(FaultState(error_rate=0.0))
    async with client.get(f"{upstream.url}/v1/artisans/a1/listings") as r:
        assert r.status == 200


async def test_die_mid_body_truncates_the_response(
        upstream: SampleUpstream, client: aiohttp.ClientSession) -> None:
    await upstream.set_faults(FaultState(die_mid_body_rate=1.0))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with client.get(f"{upstream.url}/v1/artisans/a1/listings") as r:
            assert r.status == 200
            await r.read()


async def test_fault_plan_driver_takes_upstream_down_and_back(upstream: SampleUpstream) -> None:
    plan = FaultPlan((FaultPhase("outage", "inventory", "down", 0.0, 0.3),))
    await apply_plan_at(plan, {"inventory": upstream}, 0.1)
    assert not upstream.is_listening
    await run_fault_plan(plan, {"inventory": upstream}, started=time.monotonic() - 0.5, until=0.6)
    assert upstream.is_listening and upstream.faults == FaultState()


def test_standalone_command_serves_until_sigterm() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gateway.sample_upstreams", "--port", str(port), "--name", "orders"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert f":{port}" in proc.stdout.readline()  # printed once listening
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200 and b'"orders"' in resp.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
