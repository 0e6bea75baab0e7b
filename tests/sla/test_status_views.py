"""The status page in headless Chromium, on a desktop and on a 390 px phone: the banner for each mix of
upstream state and SLA state, an overspent budget said as a multiple, one unit per axis, charts that
need more history say so, links between the admin pages, and no sideways scrolling on the phone."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collectors.store import Store
from gateway.config import HealthCheck, Route, Sla, Upstream

from .conftest import _serve_flip, call, insert_calls, insert_checks, make_config, status_gateway

pytestmark = pytest.mark.browser

TOKEN = "admin-secret"
WIDTHS = ((1400, 1000, False, "desktop"), (390, 844, True, "phone"))

FACTS = """JSON.stringify({
  banner: [...document.querySelector('[data-role=summary]').classList].find(
      c => ['up', 'degraded', 'down'].includes(c)),
  bannerText: document.querySelector('[data-role=summary]').textContent.trim(),
  bannerColour: getComputedStyle(document.querySelector('[data-role=summary]')).backgroundColor,
  status: document.querySelector('section.card').dataset.status,
  state: document.querySelector('section.card').dataset.state,
  budget: document.querySelector('[data-metric=budget_remaining_pct]').textContent.trim(),
  meter: (m => m !== null && m.querySelector('span').getBoundingClientRect().width
         <= m.getBoundingClientRect().width)(document.querySelector('.meter')),
  lag: document.querySelector('[data-metric=sync_lag_p95_ms]').textContent.trim(),
  axes: [...document.querySelectorAll('svg.chart text.axis-label')].map(t => t.textContent),
  ticks: [...document.querySelectorAll('svg.chart text')].map(t => t.textContent),
  thin: [...document.querySelectorAll('[data-role=not-enough-history]')].map(
      p => p.closest('[data-chart]').dataset.chart),
  nav: [...document.querySelectorAll('nav.site a')].map(a => a.getAttribute('href')),
  favicon: document.querySelector('link[rel=icon]')?.getAttribute('href') ?? null,
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
})"""

OVERFLOW = """JSON.stringify({
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  nav: [...document.querySelectorAll('nav.site a')].map(a => a.getAttribute('href'))})"""


@dataclass(frozen=True)
class Scenario:
    name: str
    upstream_mode: str  # healthy | down, what the upstream answers the live check
    bad_calls: int  # of 400 calls over the last day
    spread_s: float  # calls spread over this many seconds before now
    banner: str  # the banner's expected state
    status: str  # the SLA's expected status


SCENARIOS = (
    Scenario("up-and-met", "healthy", 0, 600, "up", "OK"),
    Scenario("up-but-breached", "healthy", 200, 2 * 86400, "down", "BREACHED"),
    # the live DOWN check alone overspends the probe budget (1 failed of 13 against 99.9 %)
    Scenario("upstream-down", "down", 0, 2 * 86400, "down", "BREACHED"),
)


@pytest.fixture(params=SCENARIOS, ids=lambda s: s.name)
async def scenario_gw(request: Any, sla_store: Store) -> AsyncIterator[tuple[Scenario, Any]]:
    sc: Scenario = request.param
    up, runner = await _serve_flip()
    now = time.time()
    t_end = now // 60 * 60 - 60
    # an hour of UP checks (every 5 min) so the SLA has probes, then the live check decides the state
    insert_checks(sla_store, [(t_end - 3600 + 300 * i, "inv", "ok", "UP", "") for i in range(12)])
    insert_calls(sla_store, [
        call(t_end - sc.spread_s + sc.spread_s * i / 400, status=503 if i < sc.bad_calls else 200,
             error_source="upstream" if i < sc.bad_calls else "", duration_ms=80.0 + i % 7 * 20,
             sync_lag_ms=30_000.0 + i * 10, seq=i) for i in range(400)])
    hc = HealthCheck(interval=3600, timeout=2.0, failure_threshold=1, success_threshold=1,
                     conditions=("[STATUS] == 200",))
    config = make_config(
        upstreams=(Upstream("inv", up.url, health_check=hc),),
        routes=(Route("stock", "/v1/stock", ("GET",), "inv"),),
        # a lenient sync-lag target so only availability decides the SLA status
        slas=(Sla("inventory-sync", route="stock", availability=99.9, sync_lag_p95=60.0),))
    up.mode = sc.upstream_mode
    try:
        async with status_gateway(sla_store, config) as gw:
            yield sc, gw
    finally:
        await runner.cleanup()


async def _shot(browser: Any, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("LOOMGATE_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    shot = out / f"{name}.png"
    await browser.screenshot(shot)
    assert shot.stat().st_size > 5_000
    print(f"screenshot: {shot}")


async def test_status_banner_budget_units_and_layout(scenario_gw: tuple[Scenario, Any], browser: Any,
                                                     tmp_path: Path) -> None:
    sc, gw = scenario_gw
    await browser.sign_in(gw.admin_url + "/status", TOKEN)
    for width, height, mobile, label in WIDTHS:
        await browser.viewport(width, height, mobile=mobile)
        await browser.navigate(gw.admin_url + "/status")
        await browser.wait_for("location.pathname === '/status' && document.readyState === 'complete'"
                               " && document.querySelector('section.card') !== null")
        f = json.loads(await browser.evaluate(FACTS))
        assert (f["banner"], f["status"]) == (sc.banner, sc.status), f["bannerText"]
        assert f["bannerColour"] == ("rgb(46, 157, 87)" if sc.banner == "up" else "rgb(214, 69, 69)")
        if sc.name == "up-and-met":
            assert f["bannerText"] == "All checked upstreams are up · all SLAs met"
            assert f["budget"] == "100.0 % left"
            assert f["thin"] == ["latency", "sync-lag"]  # every call in one bucket: no one-point line
        if sc.name == "up-but-breached":
            assert f["state"] == "UP" and f["bannerText"].startswith("All checked upstreams are up")
            assert "SLA breached: inventory-sync" in f["bannerText"]
            # 200 bad of 0.4 allowed (400 requests x 0.1 %): 500 times the budget, the bar empty
            assert f["budget"] == "budget overspent 500\u00d7"
        if sc.name == "upstream-down":
            assert f["state"] == "DOWN" and f["bannerText"].startswith("Down: inv")
        assert f["meter"]
        if sc.spread_s > 86400:
            assert f["thin"] == []
            assert f["axes"] == ["ms", "s"]  # latency in ms, sync lag in s, one unit each
            assert f["lag"].endswith(" s") and not any(t.endswith("k") for t in f["ticks"])
        assert f["nav"] == ["/status", "/insights", "/"] and f["favicon"] == "/static/favicon.svg"
        assert f["scrollWidth"] <= f["innerWidth"], f"{label}: the page scrolls sideways"
        await _shot(browser, f"status-{sc.name}-{label}", tmp_path)
    if sc.name == "up-but-breached":  # one history is enough for the links (the phone viewport is on)
        await _follow_links(browser, gw, tmp_path)


async def _follow_links(browser: Any, gw: Any, tmp_path: Path) -> None:
    """On the phone: status -> insights -> API index -> status through the nav, none scrolling sideways."""
    for there in ("/insights", "/", "/status"):
        selector = json.dumps(f'nav.site a[href="{there}"]')
        await browser.evaluate(f"document.querySelector({selector}).click(); true")
        await browser.wait_for(f"location.pathname === {json.dumps(there)}"
                               " && document.readyState === 'complete'"
                               " && document.querySelector('nav.site') !== null", 60)
        f = json.loads(await browser.evaluate(OVERFLOW))
        assert f["nav"] == ["/status", "/insights", "/"]
        assert f["scrollWidth"] <= f["innerWidth"], f"{there}: the page scrolls sideways"
        if there == "/":
            links = json.loads(await browser.evaluate(
                "JSON.stringify([...document.querySelectorAll('main a')].map(a => a.getAttribute('href')))"))
            assert {"/status", "/insights", "/api/sla", "/api/queries"} <= set(links)
        await _shot(browser, "phone-" + (there.strip("/") or "index"), tmp_path)
