"""Admin API of the KPI feature through a real gateway: JSON Lines ingest, the query library, /insights."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from collectors.store import Store, ThreadStore
from gateway.testing import ADMIN_TOKEN, client_session, standard_config

from .conftest import Generated
from .test_formulas import END, load_shop

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHANGE = {"change_id": "c1", "partner_id": "p", "artisan_id": "*", "description": "v2",
          "kind": "version_upgrade", "ts": "2026-01-05T00:00:00Z"}


async def _gateway(store: Store, gateway: Callable[..., Awaitable[Any]], upstream_server: Any) -> Any:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    gw.services.store = ThreadStore(store)  # admin routes read the store from the services per request
    return gw


async def test_ingest_jsonl(kpi_store: Store, gateway: Any, upstream_server: Any) -> None:
    gw = await _gateway(kpi_store, gateway, upstream_server)
    url = gw.admin_url + "/api/kpi/integration_changes"
    body = json.dumps(CHANGE) + "\n" + json.dumps({**CHANGE, "change_id": "c2"}) + "\n"
    async with client_session() as s:
        async with s.post(url, data=body, headers=AUTH) as r:
            assert r.status == 200 and await r.json() == {"table": "kpi_integration_changes", "rows": 2}
        async with s.post(url, data=body, headers=AUTH) as r:  # a webhook retried: still two changes
            assert r.status == 200
        bad = body + json.dumps({**CHANGE, "change_id": "c3", "ts": "soon"}) + "\n"
        async with s.post(url, data=bad, headers={**AUTH, "X-Request-Id": "req-1"}) as r:
            err = (await r.json())["error"]
            assert r.status == 400 and err["code"] == "invalid_kpi_data" and err["request_id"] == "req-1"
            assert (err["line"], err["row"], err["column"]) == (3, 3, "ts")
            assert err["message"] == ("request body: line 3 (row 3): column ts: 'soon' is not a time "
                                      "(ISO-8601 or epoch seconds); nothing was imported")
        async with s.post(gw.admin_url + "/api/kpi/payments", data=body, headers=AUTH) as r:
            assert r.status == 404 and "unknown KPI table 'payments'" in (await r.json())["error"]["message"]
        async with s.post(url, data=body) as r:
            assert r.status == 401
    assert kpi_store.query("SELECT count() FROM kpi_integration_changes FINAL").rows[0][0] == 2


async def test_query_api(kpi_store: Store, gateway: Any, upstream_server: Any) -> None:
    load_shop(kpi_store)
    gw = await _gateway(kpi_store, gateway, upstream_server)
    async with client_session() as s:
        async with s.get(gw.admin_url + "/api/queries", headers=AUTH) as r:
            listing = {q["name"]: q for q in (await r.json())["queries"]}
        assert {"retention_kpis", "health_vs_retention", "benchmark_scorecard"} <= set(listing)
        param = next(p for p in listing["retention_kpis"]["params"] if p["name"] == "inactivity_days")
        assert param == {"name": "inactivity_days", "type": "UInt16", "default": "90", "required": False,
                         "help": "a customer is lost after this long without an order"}
        q = {"end": END.isoformat(), "periods": "1", "inactivity_days": "60", "artisan": "A"}
        async with s.get(gw.admin_url + "/api/queries/retention_kpis", params=q, headers=AUTH) as r:
            body = await r.json()
        assert r.status == 200 and body["query"] == "retention_kpis"
        (row,) = [dict(zip(body["columns"], v, strict=True)) for v in body["rows"]]
        assert (row["orders"], row["churn_rate"], row["nps"]) == (5, 0.3333, 25.0)
        async with s.get(gw.admin_url + "/api/queries/retention_kpis", params={"periods": "-1"},
                         headers=AUTH) as r:
            err = (await r.json())["error"]
            assert r.status == 400 and err["param"] == "periods" and "out of range" in err["message"]
        async with s.get(gw.admin_url + "/api/queries/nope", headers=AUTH) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_query"


async def test_without_a_store_the_api_says_so(gateway: Any, upstream_server: Any) -> None:
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    async with client_session() as s, s.get(gw.admin_url + "/api/queries/benchmark_scorecard",
                                            headers=AUTH) as r:
        assert r.status == 503 and (await r.json())["error"]["code"] == "store_unavailable"


def _window(gen: Generated) -> dict[str, str]:
    end = gen.plan.end
    return {"start": (end - dt.timedelta(days=30)).isoformat(), "end": end.isoformat()}


async def test_insights_page_html(generated: Generated, gateway: Any, upstream_server: Any) -> None:
    gw = await _gateway(generated.store, gateway, upstream_server)
    async with client_session() as s, s.get(gw.admin_url + "/insights", params=_window(generated),
                                            headers=AUTH) as r:
        page = await r.text()
    assert r.status == 200 and r.content_type == "text/html"
    assert page.count('<figure class="scatter"') == 15  # 3 health metrics x 5 KPIs
    assert 'data-metric="sync_lag_p95_s" data-kpi="cart_abandonment"' in page
    assert "higher sync-lag p95 goes with higher cart abandonment" in page
    assert '<p class="fdr">12 tests, FDR 5 %' in page  # the NPS pairs: too few answers, not tested
    assert 'data-change="chg-craftbridge-v2"' in page and 'data-benchmark="integration uptime"' in page


@pytest.mark.browser
async def test_insights_in_chromium(generated: Generated, gateway: Any, upstream_server: Any, browser: Any,
                                    tmp_path: Any) -> None:
    import os
    from pathlib import Path

    gw = await _gateway(generated.store, gateway, upstream_server)
    await browser.navigate(gw.admin_url + "/insights")
    # not signed in: the login form first, like a person would
    await browser.wait_for("location.pathname === '/login' && document.querySelector('#token') !== null")
    await browser.evaluate(f"document.querySelector('#token').value = {json.dumps(ADMIN_TOKEN)};"
                           "document.querySelector('form').submit(); true")
    await browser.wait_for("location.pathname === '/insights' && document.readyState === 'complete'", 60)
    q = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in _window(generated).items())
    await browser.navigate(gw.admin_url + "/insights?" + q)
    await browser.wait_for("document.querySelectorAll('figure.scatter').length === 15", 60)
    facts = json.loads(await browser.evaluate(FACTS))
    lag = next(f for f in facts["scatter"]
               if f["metric"] == "sync_lag_p95_s" and f["kpi"] == "cart_abandonment")
    assert lag["n"] >= 100 and lag["dots"] == lag["n"] and lag["fit"] == 1 and float(lag["r"]) > 0.3
    assert lag["effect"] == "higher sync-lag p95 goes with higher cart abandonment"
    assert lag["width"] > 200
    latency = [f for f in facts["scatter"]
               if f["metric"] == "latency_p50_ms" and f["kpi"] in ("cart_abandonment", "repeat_purchase")]
    assert len(latency) == 2 and all(f["effect"] is None for f in latency)
    change = next(c for c in facts["changes"] if c["id"] == "chg-craftbridge-v2")
    assert change["before"] == change["after"] == 3
    assert [b for b, _ in facts["score"]] == [
        "cart abandonment", "post-purchase survey response", "data sync latency (p95)", "repeat purchase",
        "loyalty programme engagement", "integration uptime"]
    assert all(status in ("meets", "misses", "n/a") for _, status in facts["score"])
    out = Path(os.environ.get("LOOMGATE_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "insights_page.png"
    await browser.screenshot(shot)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


FACTS = """JSON.stringify({
  scatter: [...document.querySelectorAll('figure.scatter')].map(f => ({
     metric: f.dataset.metric, kpi: f.dataset.kpi, n: +f.dataset.n, r: f.dataset.r,
     dots: f.querySelectorAll('circle').length, fit: f.querySelectorAll('line.fit').length,
     effect: f.querySelector('.effect')?.textContent ?? null,
     width: f.querySelector('svg').getBoundingClientRect().width})),
  changes: [...document.querySelectorAll('figure.change')].map(f => ({
     id: f.dataset.change, before: f.querySelectorAll('rect.before').length,
     after: f.querySelectorAll('rect.after').length})),
  score: [...document.querySelectorAll('tr[data-benchmark]')].map(
     r => [r.dataset.benchmark, r.children[3].textContent])})"""


async def test_ingest_large_body_arrives_whole(kpi_store: Store, gateway: Any, upstream_server: Any) -> None:
    gw = await _gateway(kpi_store, gateway, upstream_server)
    lines = [json.dumps({"cart_id": f"c{i:06d}", "buyer_id": f"b{i % 97}", "artisan_id": f"a{i % 13}",
                         "event": "created", "ts": 1767225600 + i, "channel": "email"})
             for i in range(30_000)]
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 3 << 20  # several reads of the request stream

    async def chunks():  # streamed in small pieces, as a webhook relay might send it
        step = 64 << 10
        for i in range(0, len(body), step):
            yield body[i:i + step]

    async with client_session() as s, s.post(gw.admin_url + "/api/kpi/cart_events", data=chunks(),
                                             headers=AUTH) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["rows"] == 30_000
    assert kpi_store.query("SELECT count(), uniqExact(cart_id) FROM kpi_cart_events FINAL").rows[0] == (
        30_000, 30_000)
