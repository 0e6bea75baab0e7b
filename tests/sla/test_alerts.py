"""Burn-rate alerts against a real local webhook receiver: dedupe, resolve, retries, proxying unaffected."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import Any

import aiohttp
from aiohttp import web

from collectors.alerts import start_alerts
from collectors.record import ListSink
from collectors.store import Store, ThreadStore
from gateway.config import AlertsConfig, LatencyObjective, Route, Sla, Upstream, Webhook

NOW = dt.datetime(2024, 5, 31, tzinfo=dt.UTC).timestamp()


def _config(config_factory: Any, webhooks: tuple[Webhook, ...]) -> Any:
    return config_factory(
        upstreams=(Upstream("inv", "http://127.0.0.1:1"),),
        routes=(Route("stock", "/v1/stock", ("GET",), "inv"),),
        slas=(Sla("inventory", upstream="inv", availability=99.9),),
        alerts=AlertsConfig(evaluate_every=3600, webhooks=webhooks))


def _outage(history: Any, store: Store) -> None:
    """Ending at NOW: the last 5 minutes 50 % of 50 requests fail (25 bad). Around it enough good traffic
    that only the 1h/5m page rule fires: 1 h 600 requests, 6 h 6,600, 1 d 9,600, 3 d 29,600."""
    calls = []
    seq = 0

    def spread(n: int, start_ago: float, end_ago: float, bad_after: float | None = None) -> None:
        nonlocal seq
        step = (start_ago - end_ago) / n
        for i in range(n):
            t = NOW - start_ago + i * step
            bad = bad_after is not None and t >= NOW - bad_after and i % 2 == 0
            calls.append(history.call(t, status=503 if bad else 200, error_source="upstream" if bad else "",
                                      seq=seq))
            seq += 1

    spread(600, 3600, 0, bad_after=300)
    spread(6000, 6 * 3600, 3600)
    spread(3000, 86400, 6 * 3600)
    spread(20000, 3 * 86400, 86400)
    history.insert_calls(store, calls)


def _history(store: Store) -> list[tuple[Any, ...]]:
    return store.query("SELECT AlertKey, Event, Webhook, Attempts FROM loomgate_alerts "
                       "ORDER BY Timestamp, Event, Webhook").rows


async def test_fires_once_per_episode_and_resolves(sla_store: Store, history: Any, config_factory: Any,
                                                   webhook_receiver: Any) -> None:
    _outage(history, sla_store)
    hooks = (Webhook("ops", webhook_receiver.url, format="json"),
             Webhook("chat", webhook_receiver.url, format="slack"))
    cfg = _config(config_factory, hooks)
    mgr = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False)
    try:
        changes = await mgr.evaluate_once(NOW)
        assert [(c.status, c.key) for c in changes] == [("firing", "inventory/requests/1h/5m")]
        await webhook_receiver.wait_for(2)
        # later evaluations in the same episode send nothing
        assert await mgr.evaluate_once(NOW + 30) == []
        assert await mgr.evaluate_once(NOW + 60) == []
        await mgr.wait_deliveries(5)
        assert len(webhook_receiver.received) == 2
        json_msg = next(m for m in webhook_receiver.received if "status" in m)
        slack_msg = next(m for m in webhook_receiver.received if "text" in m)
        assert json_msg["status"] == "firing" and json_msg["alert"] == "inventory/requests/1h/5m"
        assert json_msg["severity"] == "page" and json_msg["factor"] == 14.4
        assert json_msg["short_error_ratio"] == 0.5 and json_msg["long_burn_rate"] > 14.4
        assert set(slack_msg) == {"text"} and slack_msg["text"].startswith("[FIRING] page: SLA inventory")
        # an hour later the short window is clean: the episode ends with one resolve message per webhook
        changes = await mgr.evaluate_once(NOW + 3600)
        assert [(c.status, c.key) for c in changes] == [("resolved", "inventory/requests/1h/5m")]
        await webhook_receiver.wait_for(4)
        assert await mgr.evaluate_once(NOW + 3660) == []
        await mgr.wait_deliveries(5)
        resolved = [m for m in webhook_receiver.received[2:]]
        assert {m.get("status") for m in resolved} == {"resolved", None}
        assert any(m.get("text", "").startswith("[RESOLVED]") for m in resolved)
    finally:
        await mgr.close()
    rows = _history(sla_store)
    events = sorted((r[1], r[2]) for r in rows)
    assert events == sorted([("firing", ""), ("delivered", "ops"), ("delivered", "chat"),
                             ("resolved", ""), ("delivered", "ops"), ("delivered", "chat")])


async def test_restart_does_not_page_again(sla_store: Store, history: Any, config_factory: Any,
                                           webhook_receiver: Any) -> None:
    _outage(history, sla_store)
    cfg = _config(config_factory, (Webhook("ops", webhook_receiver.url),))
    first = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False)
    try:
        assert len(await first.evaluate_once(NOW)) == 1
        await webhook_receiver.wait_for(1)
    finally:
        await first.close()
    second = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False)
    try:
        assert second.restored == {"inventory/requests/1h/5m"}
        assert await second.evaluate_once(NOW + 60) == []
        changes = await second.evaluate_once(NOW + 3600)
        assert [c.status for c in changes] == ["resolved"]
        await webhook_receiver.wait_for(2)
    finally:
        await second.close()
    assert [m["status"] for m in webhook_receiver.received] == ["firing", "resolved"]


async def test_failing_webhook_is_retried_with_backoff(sla_store: Store, history: Any, config_factory: Any,
                                                       webhook_receiver: Any) -> None:
    _outage(history, sla_store)
    webhook_receiver.fail_next = 2
    cfg = _config(config_factory, (Webhook("ops", webhook_receiver.url, max_retries=4),))
    mgr = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False, retry_base=0.05)
    try:
        t0 = time.monotonic()
        await mgr.evaluate_once(NOW)
        await webhook_receiver.wait_for(1)
        elapsed = time.monotonic() - t0
        await mgr.wait_deliveries(5)
    finally:
        await mgr.close()
    assert webhook_receiver.attempts == 3 and len(webhook_receiver.received) == 1
    assert elapsed >= 0.05 + 0.1  # two backoff sleeps: base, then 2 x base
    delivered = [r for r in _history(sla_store) if r[1] == "delivered"]
    assert delivered == [("inventory/requests/1h/5m", "delivered", "ops", 3)]


async def test_webhook_down_gives_up_and_proxying_is_unaffected(sla_store: Store, history: Any,
                                                                 config_factory: Any) -> None:
    """A webhook that accepts connections and never answers: deliveries time out and retry in the
    background while the gateway keeps proxying normally; in the end the failure is recorded."""
    from gateway.server import run_gateway
    from gateway.testing import make_partner, make_route, make_upstream, start_server

    hung = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await hung.wait()
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", never)
    hook = await start_server(hook_app)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    up_app = web.Application()
    up_app.router.add_get("/v1/stock", ok)
    upstream = await start_server(up_app)

    _outage(history, sla_store)
    base = config_factory(upstreams=(make_upstream("inv", upstream.url),),
                          routes=(make_route("stock", "/v1/stock", upstream="inv"),),
                          partners=(make_partner("p1", "key-1"),))
    cfg = dataclasses.replace(_config(config_factory, (Webhook("ops", hook.url + "/hook", timeout=0.3,
                                                               max_retries=2),)),
                              upstreams=base.upstreams, routes=base.routes, partners=base.partners)
    mgr = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False, retry_base=0.1)
    try:
        async with run_gateway(cfg, sink=ListSink()) as gw, aiohttp.ClientSession() as client:
            await mgr.evaluate_once(NOW)
            assert mgr._deliveries, "delivery should be running in the background"
            statuses = []
            for _ in range(50):
                async with client.get(gw.partner_url + "/v1/stock", headers={"X-Api-Key": "key-1"}) as r:
                    statuses.append(r.status)
            assert statuses == [200] * 50
            assert mgr._deliveries, "the hung webhook is still being retried while requests flow"
            await mgr.wait_deliveries(10)
            assert not mgr._deliveries
    finally:
        hung.set()
        await mgr.close()
        await hook.close()
        await upstream.close()
    failed = [r for r in _history(sla_store) if r[1] == "delivery_failed"]
    assert failed == [("inventory/requests/1h/5m", "delivery_failed", "ops", 3)]
    msg = sla_store.query("SELECT Message FROM loomgate_alerts WHERE Event = 'delivery_failed'").rows[0][0]
    assert "Timeout" in msg


async def test_latency_objective_burn_pages_with_its_own_objective(sla_store: Store, history: Any,
                                                                   config_factory: Any,
                                                                   webhook_receiver: Any) -> None:
    # every request succeeds, but in the last 5 minutes 90 % of them take 900 ms against a 300 ms threshold
    calls = [history.call(NOW - 300 + 3 * i, duration_ms=900.0 if i % 10 else 40.0, seq=i)
             for i in range(100)]
    history.insert_calls(sla_store, calls)
    cfg = dataclasses.replace(
        _config(config_factory, (Webhook("ops", webhook_receiver.url, format="json"),)),
        slas=(Sla("inventory", upstream="inv", availability=99.9,
                  latency=LatencyObjective(threshold=0.3, target=95.0)),))
    mgr = await start_alerts(cfg, ThreadStore(sla_store), None, schedule=False)
    try:
        changes = await mgr.evaluate_once(NOW)
        # 90 % slow against a 5 % budget is an 18x burn: every rule fires; availability is untouched
        assert {c.key for c in changes} == {f"inventory/latency/{r}" for r in ("1h/5m", "6h/30m", "1d/2h",
                                                                             "3d/6h")}
        await webhook_receiver.wait_for(4)
        page = next(m for m in webhook_receiver.received if m["alert"] == "inventory/latency/1h/5m")
        assert page["signal"] == "latency" and page["objective_pct"] == 95.0
        assert page["long_burn_rate"] == 18.0 and abs(page["threshold"] - 14.4 * 0.05) < 1e-9
        assert page["latency_threshold_ms"] == 300.0
        assert "(upstream inv, 95 % within 300 ms)" in page["message"]
        assert page["message"].endswith("(limit 14.4x, latency)")
    finally:
        await mgr.close()
