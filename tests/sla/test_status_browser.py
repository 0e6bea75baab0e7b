"""The status page in a real headless Chromium: sign in through the login form, then read the rendered DOM."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

FACTS = """JSON.stringify({
  path: location.pathname,
  cards: [...document.querySelectorAll('section.card')].map(c => ({
    sla: c.dataset.sla, state: c.dataset.state, status: c.dataset.status,
    badge: c.querySelector('[data-role=state]').textContent.trim(),
    availability: c.querySelector('[data-metric=request_availability_pct]').textContent.trim(),
    compliance: c.querySelector('[data-metric=latency_compliance_pct]').textContent.trim(),
    maintenance: c.querySelector('[data-maintenance]')?.dataset.maintenance ?? null,
    bars: c.querySelectorAll('svg.bars rect').length,
    coloured: [...c.querySelectorAll('svg.bars rect')].filter(
        r => r.getAttribute('fill') !== '#c9ced6').length,
    lines: c.querySelectorAll('svg.chart polyline').length,
    barWidth: c.querySelector('svg.bars').getBoundingClientRect().width,
  })),
  summary: document.querySelector('[data-role=summary]').textContent.trim(),
  openIncidents: document.querySelector('[data-role=open-incidents]').textContent.trim(),
  incidents: [...document.querySelectorAll('tr[data-incident]')].map(
      r => [r.dataset.incident, r.dataset.open]),
  maintenanceWindows: [...document.querySelectorAll('[data-maintenance-window]')].map(
      li => [li.dataset.maintenanceWindow, li.dataset.active]),
  stylesheetApplied: getComputedStyle(document.querySelector('.badge.down')).backgroundColor,
})"""


async def test_status_page_in_chromium(status_env: Any, browser: Any, tmp_path: Path) -> None:
    admin = status_env.gw.admin_url
    await browser.navigate(admin + "/status")
    # not signed in: redirected to the login form; sign in like a person would
    await browser.wait_for("location.pathname === '/login' && document.querySelector('#token') !== null")
    await browser.evaluate(f"document.querySelector('#token').value = {json.dumps(status_env.token)};"
                           "document.querySelector('form').submit(); true")
    await browser.wait_for("location.pathname === '/status' && document.readyState === 'complete'"
                           " && document.querySelectorAll('section.card').length === 2")
    facts = json.loads(await browser.evaluate(FACTS))
    assert status_env.token not in await browser.evaluate("location.href + document.cookie")

    cards = {c["sla"]: c for c in facts["cards"]}
    inv, orders = cards["inventory-sync"], cards["orders-api"]
    assert (inv["state"], inv["badge"], inv["status"]) == ("DOWN", "DOWN", "BREACHED")
    assert inv["availability"] == "98.500 %" and inv["compliance"] == "90.000 %"
    assert (orders["state"], orders["status"], orders["maintenance"]) == ("UP", "OK", "orders-db-upgrade")
    assert orders["availability"] == "100.000 %"
    for c in (inv, orders):
        assert c["bars"] == 90 and 3 <= c["coloured"] <= 4  # 3 days of history (+ today's live check)
        assert c["lines"] >= 2 and c["barWidth"] > 300
    assert facts["summary"].startswith("Down: inv") and "inventory-sync" in facts["summary"]
    assert facts["openIncidents"] == "1 open"
    assert facts["incidents"].count(["inv", "true"]) == 1 and len(facts["incidents"]) == 3
    assert ["orders-db-upgrade", "true"] in facts["maintenanceWindows"]
    assert ["weekly-reindex", "false"] in facts["maintenanceWindows"]
    assert facts["stylesheetApplied"] == "rgb(214, 69, 69)"  # /static/status.css loaded

    out = Path(os.environ.get("LOOMGATE_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "status_page.png"
    await browser.screenshot(shot)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
