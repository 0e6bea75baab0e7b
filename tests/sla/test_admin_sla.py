"""Admin API (/api/sla, /api/incidents, /api/checks) and the server-rendered /status page."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import aiohttp


def _auth(env: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.token}"}


async def _get(env: Any, path: str, **kw: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(env.gw.admin_url + path, allow_redirects=False, **kw) as r:
        body = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, body


async def test_api_needs_the_token(status_env: Any) -> None:
    for path in ("/api/sla", "/api/incidents", "/api/checks"):
        status, body = await _get(status_env, path)
        assert status == 401 and body["error"]["code"] == "unauthorized", path
    status, _ = await _get(status_env, "/status")
    assert status in (303, 401)


async def test_api_sla(status_env: Any) -> None:
    status, body = await _get(status_env, "/api/sla?window=30d", headers=_auth(status_env))
    assert status == 200 and body["window_s"] == 30 * 86400
    rows = {r["sla"]: r for r in body["slas"]}
    inv = rows["inventory-sync"]
    assert inv["requests"] == 2000 and inv["bad_requests"] == 30
    assert inv["request_availability_pct"] == 98.5
    assert inv["latency_compliance_pct"] == 90.0  # 200 of 2000 took 400 ms > 300 ms
    assert inv["status"] == "BREACHED" and inv["budget_remaining_pct"] < 0
    assert 3000 <= inv["sync_lag_p95_ms"] <= 4000
    orders = rows["orders-api"]
    assert orders["request_availability_pct"] == 100.0 and orders["status"] == "OK"
    assert orders["maintenance_now"] == "orders-db-upgrade"


async def test_api_errors_are_json(status_env: Any) -> None:
    status, body = await _get(status_env, "/api/sla?window=soon", headers=_auth(status_env))
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "window" in body["error"]["message"] and body["error"]["request_id"]
    status, body = await _get(status_env, "/api/checks?limit=0", headers=_auth(status_env))
    assert status == 400 and "limit" in body["error"]["message"]


async def test_api_incidents(status_env: Any) -> None:
    status, body = await _get(status_env, "/api/incidents?window=7d&upstream=inv", headers=_auth(status_env))
    assert status == 200
    got = body["incidents"]
    assert [(i["worst_state"], i["open"]) for i in got] == [
        ("DOWN", True), ("DEGRADED", False), ("DOWN", False)]
    down = got[2]
    start = dt.datetime.fromisoformat(down["started_at"]).timestamp()
    end = dt.datetime.fromisoformat(down["ended_at"]).timestamp()
    assert end - start == down["duration_s"] == 1800.0
    assert down["reasons"] == ["[STATUS] == 200 (actual 503)"]
    assert got[1]["duration_s"] == 1200.0
    assert got[0]["reasons"] and "503" in got[0]["reasons"][0]


async def test_api_checks(status_env: Any) -> None:
    status, body = await _get(status_env, "/api/checks?limit=3", headers=_auth(status_env))
    assert status == 200
    ups = {u["upstream"]: u for u in body["upstreams"]}
    assert ups["inv"]["state"] == "DOWN" and ups["orders"]["state"] == "UP"
    assert ups["orders"]["maintenance"] == "orders-db-upgrade"
    assert ups["inv"]["last_check"]["status_code"] == 503
    assert len(ups["inv"]["recent"]) == 3 and ups["inv"]["recent"][0]["state"] == "DOWN"


async def test_status_page_html(status_env: Any) -> None:
    status, page = await _get(status_env, "/status?window=30d", headers=_auth(status_env))
    assert status == 200
    cards = dict(re.findall(r'data-sla="([^"]+)" data-state="([^"]+)"', page))
    assert cards == {"inventory-sync": "DOWN", "orders-api": "UP"}
    assert 'data-status="BREACHED"' in page and 'data-status="OK"' in page
    assert 'data-metric="request_availability_pct">98.500 %<' in page
    assert 'data-maintenance="orders-db-upgrade"' in page
    assert page.count('data-incident="inv"') == 3 and 'data-role="open-incidents">1 open<' in page
    assert page.count("<rect") >= 2 * 90  # two 90-day strips
    assert 'class="chart latency"' in page and 'class="chart sync-lag"' in page
    assert "admin-secret" not in page
    status, css = await _get(status_env, "/static/status.css")
    assert status == 200 and ".badge" in css
