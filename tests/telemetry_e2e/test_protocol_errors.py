"""Requests the HTTP parser rejects (400 / 431) are SERVER spans Grafana's trace list shows: named ``HTTP``,
``http.request.method`` ``_OTHER`` (HTTP semantic conventions), with the time from the request's first byte
to the error response as their duration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from yarl import URL

from gateway.testing import (
    RecordingUpstream,
    make_config,
    make_upstream,
    standard_partners,
    standard_routes,
)

PAUSE_S = 0.4  # the client stalls this long inside its header block


async def _send_in_two_parts(url: str, first: bytes, second: bytes) -> dict[str, Any]:
    u = URL(url)
    reader, writer = await asyncio.open_connection(u.host, u.port)
    try:
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(PAUSE_S)
        writer.write(second)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return {"status": int(head.split(b" ", 2)[1]), "body": json.loads(body)}


async def test_rejected_requests_are_named_http_with_their_duration(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
) -> None:
    up = await upstream_server(RecordingUpstream())
    config = make_config(upstreams=[make_upstream("api", up.url)], routes=standard_routes("api"),
                         partners=standard_partners(), telemetry=e2e.telemetry(tmp_path))
    config = e2e.with_limits(config, max_field_size=1024)
    gw = await telemetry_gateway(config)
    # a header over the size limit, arriving in two parts: 431 only once the second part is in
    too_large = await _send_in_two_parts(
        gw.partner_url, b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\nX-Huge: " + b"h" * 600,
        b"h" * 3000 + b"\r\n\r\n")
    # a malformed header line, after a pause: 400
    malformed = await _send_in_two_parts(
        gw.partner_url, b"GET /v1/misc/x HTTP/1.1\r\nHost: t\r\n", b"Bad Header Name: v\r\n\r\n")
    assert (too_large["status"], malformed["status"]) == (431, 400)
    await e2e.settle(gw)

    rows = await e2e.rows(
        gw, "SELECT SpanAttributes['loomgate.request_id'], SpanName, SpanAttributes['http.request.method'], "
            "SpanAttributes['http.response.status_code'], SpanAttributes['error.type'], Duration "
            "FROM otel_traces WHERE SpanKind = 'Server'")
    got = {r[0]: r[1:] for r in rows}
    for answer, status, code in ((too_large, "431", "header_too_large"), (malformed, "400", "bad_request")):
        name, method, status_attr, error_type, duration = got[answer["body"]["error"]["request_id"]]
        assert (name, method, status_attr, error_type) == ("HTTP", "_OTHER", status, code)
        # the gateway cannot answer before the second part arrived
        assert duration >= PAUSE_S * 1e9, (code, duration)
    assert len(rows) == 2

