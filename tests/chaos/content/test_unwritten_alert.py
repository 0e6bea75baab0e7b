"""Telemetry not being written is reported: the store answers pings but takes no inserts (``otel_traces``
detached through the writer), so records wait in the spool.  Past ``telemetry.unwritten_alert_after``
/readyz answers 503 with the reason and the status page says so; once the table is back and the spool has
drained, both are clear again.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from yarl import URL

from gateway.testing import GLOBEX_KEY, standard_config


async def test_readyz_and_status_page_say_when_spooled_records_are_not_written(
    tmp_path: Path, content: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server()
    gw = await telemetry_gateway(standard_config(
        up.url, telemetry=content.telemetry(tmp_path, unwritten_alert_after=1.0, batch_window=0.25)))
    tel = content.tel_of(gw)
    store = gw.services.store
    await store.command("DETACH TABLE otel_traces")
    for i in range(6):
        async with http.get(URL(gw.partner_url + "/v1/artisans/a1/listings"),
                            headers={"Authorization": f"Bearer {GLOBEX_KEY}", "X-Request-Id": f"w-{i}"}) as r:
            assert r.status == 200
    await content.settle(gw)
    assert tel.counters()["spooled"] > 0

    seen: dict[str, Any] = {}

    async def not_ready() -> bool:
        seen["status"], seen["body"] = await content.admin_json(gw, "/readyz")
        return seen["status"] == 503

    await content.wait_for(not_ready, 20.0, "/readyz to report telemetry not written")
    body = seen["body"]
    assert body["not_ready"] == ["telemetry"], body
    assert body["checks"]["telemetry"].startswith("telemetry not written for "), body
    code, page = await content.admin_get(gw, "/status")
    assert code == 200 and 'data-role="telemetry-unwritten"' in page and "telemetry not written" in page

    await store.command("ATTACH TABLE otel_traces")

    async def drained() -> bool:
        return (await tel.writer_status())["spool_segments"] == 0

    await content.wait_for(drained, 60.0, "the spool replayed once the table is back")
    code, body = await content.admin_json(gw, "/readyz")
    assert code == 200, body
    code, page = await content.admin_get(gw, "/status")
    assert code == 200 and 'data-role="telemetry-unwritten"' not in page
    c = tel.counters()
    assert c["dropped"] == 0 and c["replayed"] == c["spooled"] == 6, c
