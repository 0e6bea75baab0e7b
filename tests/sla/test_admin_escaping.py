"""Names that reach the admin pages are data, never markup: a partner id, route, SLA or upstream name
holding ``<script>`` is shown escaped on /status, /insights and the login form."""

from __future__ import annotations

import datetime as dt
import time

import aiohttp

from collectors.store import Store
from gateway.config import HealthCheck, Route, Sla, Upstream

from .conftest import _serve_flip, call, insert_calls, insert_checks, make_config, status_gateway

EVIL = '<script>alert("x")</script>'
AUTH = {"Authorization": "Bearer admin-secret"}


async def test_hostile_names_render_escaped(sla_store: Store) -> None:
    up, runner = await _serve_flip()
    now = time.time()
    t_end = now // 60 * 60 - 60
    upstream, route, partner = f"inv{EVIL}", f"stock{EVIL}", f"p{EVIL}"
    insert_checks(sla_store, [(t_end - 300 * i, upstream, "ok", "UP", EVIL) for i in range(6)])
    insert_calls(sla_store, [call(t_end - 2 * 86400 + 600 * i, upstream=upstream, route=route, seq=i)
                             ._replace(partner_id=partner, artisan_id="a1") for i in range(200)])
    # an integration change of that partner, with calls before it, so Insights shows the partner id
    sla_store.insert("kpi_integration_changes",
                     [("chg-1", partner, "*", f"fix {EVIL}", "outage_fix",
                       dt.datetime.fromtimestamp(t_end - 86400, dt.UTC))],
                     ["change_id", "partner_id", "artisan_id", "description", "kind", "ts"])
    hc = HealthCheck(interval=3600, timeout=2.0, failure_threshold=1, success_threshold=1,
                     conditions=("[STATUS] == 200",))
    config = make_config(upstreams=(Upstream(upstream, up.url, health_check=hc),),
                         routes=(Route(route, "/v1/stock", ("GET",), upstream),),
                         slas=(Sla(f"sla{EVIL}", route=route, availability=99.0),))
    try:
        async with status_gateway(sla_store, config) as gw, aiohttp.ClientSession() as s:
            pages = {}
            for path in ("/status", "/insights", f"/login?next=/{EVIL}"):
                async with s.get(gw.admin_url + path, headers=AUTH) as r:
                    assert r.status == 200, path
                    pages[path] = await r.text()
    finally:
        await runner.cleanup()
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    for path, page in pages.items():
        assert "<script" not in page.lower(), path
    assert f"sla{escaped}" in pages["/status"] and f"route stock{escaped}" in pages["/status"]
    assert f"upstream inv{escaped}" in pages["/status"]
    assert f"p{escaped}" in pages["/insights"] and f"fix {escaped}" in pages["/insights"]
    assert f"/{escaped}" in pages[f"/login?next=/{EVIL}"]
