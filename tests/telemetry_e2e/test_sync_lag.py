"""Sync lag through the gateway: a source change time in a header or a JSON field becomes
``loomgate.sync_lag_ms`` on the SERVER span (acknowledgement time minus source time); a time far in the
future is ``loomgate.sync_lag_invalid``; nothing is measured when the upstream did not accept the write."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp
from aiohttp import web

from gateway.testing import GLOBEX_KEY, RecordingUpstream, standard_config

INVENTORY = "/v1/artisans/a1/listings/{listing}/inventory"  # lag from the X-Source-Updated-At header
FUTURE_S = 300.0  # far beyond the default 2 s of allowed clock skew


@dataclass(frozen=True)
class LagCase:
    name: str
    where: Literal["header", "json"]
    offset_ms: float  # source time = now - offset (negative: in the future)
    form: Literal["ms", "iso"]
    listing: str = "l1"  # inventory listing; "rejected" / "broken" make the upstream refuse
    status: int = 200


CASES = (
    LagCase("header-ms", "header", 1500.0, "ms"),
    LagCase("header-iso", "header", 4000.0, "iso"),
    LagCase("json-ms", "json", 2500.0, "ms"),
    LagCase("json-iso", "json", 800.0, "iso"),
    LagCase("header-future", "header", -FUTURE_S * 1000, "iso"),
    LagCase("json-future", "json", -FUTURE_S * 1000, "ms"),
    LagCase("header-409", "header", 1000.0, "ms", listing="rejected", status=409),
    LagCase("header-500", "header", 1000.0, "ms", listing="broken", status=500),
    LagCase("header-future-409", "header", -FUTURE_S * 1000, "ms", listing="rejected", status=409),
)


def source_value(source_ms: float, form: str) -> Any:
    if form == "ms":
        return int(source_ms)
    return datetime.fromtimestamp(source_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def refusing_upstream() -> RecordingUpstream:
    def answer(status: int) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"status": status}, status=status)

        return handler

    up = RecordingUpstream()
    up.on(INVENTORY.format(listing="rejected"), answer(409))
    up.on(INVENTORY.format(listing="broken"), answer(500))
    return up


async def send_case(e2e: SimpleNamespace, http: aiohttp.ClientSession, url: str, case: LagCase) -> Any:
    """Send the case with a source time ``offset_ms`` before now; returns what the client saw."""
    source_ms = time.time() * 1000 - case.offset_ms
    value = source_value(source_ms, case.form)
    rid = f"lag-{case.name}"
    if case.where == "header":
        s = await e2e.send(http, url, "PUT", INVENTORY.format(listing=case.listing), key=GLOBEX_KEY,
                           request_id=rid, headers={"X-Source-Updated-At": str(value)}, json={"qty": 2})
    else:
        body = {"order": {"artisan_id": "a7"}, "changed_at": value}
        s = await e2e.send(http, url, "POST", "/v1/orders", key=GLOBEX_KEY, request_id=rid, json=body)
    return s


async def test_sync_lag_from_header_and_json_field(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(refusing_upstream())
    gw = await telemetry_gateway(standard_config(up.url, telemetry=e2e.telemetry(tmp_path)))
    sent = {}
    for case in CASES:
        s = await send_case(e2e, http, gw.partner_url, case)
        assert s.status == case.status, case.name
        sent[case.name] = (case, s)
    await e2e.settle(gw)

    got = {rid: (lag, invalid) for rid, lag, invalid in await e2e.rows(
        gw, "SELECT SpanAttributes['loomgate.request_id'], "
            "if(mapContains(SpanAttributes, 'loomgate.sync_lag_ms'), "
            "   toFloat64(SpanAttributes['loomgate.sync_lag_ms']), NULL), "
            "if(mapContains(SpanAttributes, 'loomgate.sync_lag_invalid'), "
            "   SpanAttributes['loomgate.sync_lag_invalid'], NULL) "
            "FROM otel_traces WHERE SpanKind = 'Server'")}
    assert len(got) == len(CASES)
    for case, s in sent.values():
        lag, invalid = got[s.request_id]
        if case.status != 200:
            assert (lag, invalid) == (None, None), case.name  # the upstream did not accept the write
        elif case.offset_ms < 0:
            assert (lag, invalid) == (None, "true"), case.name  # never a negative lag
        else:
            # acknowledged between sending and reading the answer: lag = offset + (ack - send)
            assert invalid is None, case.name
            elapsed_ms = s.elapsed_ns / 1e6
            low = case.offset_ms - (1.0 if case.form == "ms" else 0.01)  # ms form truncates the source time
            assert low <= lag <= case.offset_ms + elapsed_ms + 20.0, (case.name, lag, elapsed_ms)

    # the rollup counts the same measurements
    measured, invalid_n = (await e2e.rows(
        gw, "SELECT sum(sync_lag_measured), sum(sync_lag_invalid) FROM loomgate_calls_1m"))[0]
    assert (measured, invalid_n) == (4, 2)
