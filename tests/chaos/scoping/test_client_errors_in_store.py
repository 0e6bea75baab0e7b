"""A client that stops reading is recorded in ClickHouse as the client's error, and the upstream's
availability SLI (``loomgate_sla_1m``) does not count it as bad."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from gateway.config import Limits
from gateway.testing import ACME_KEY, RecordingUpstream, make_upstream, standard_config

BIG = 8 << 20


async def test_stalled_reader_row_blames_the_client_and_spares_the_sla(
    upstream_server: Any, telemetry_gateway: Any, e2e: SimpleNamespace, raw: SimpleNamespace, tmp_path: Path
) -> None:
    body = bytes(BIG)

    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/octet-stream")

    up = RecordingUpstream()
    up.on("/v1/misc/big", big)
    up = await upstream_server(up)
    config = standard_config(
        up.url,
        upstream=make_upstream("api", up.url, read=1.0, total=1.0),
        limits=Limits(client_idle_timeout=0.5),
        telemetry=e2e.telemetry(tmp_path / "store"),
    )
    gw = await telemetry_gateway(config)
    loop = asyncio.get_running_loop()
    sock: socket.socket = await raw.small_window_socket(gw)
    try:
        request = (f"GET /v1/misc/big HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ACME_KEY}\r\n"
                   "X-Request-Id: stalled-reader-1\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
        await loop.sock_sendall(sock, request)
        assert await loop.sock_recv(sock, 1024)  # the response started; the client reads no more
        await e2e.wait_for(lambda: gw.inflight == 0, 10.0, "the stalled request to end")
    finally:
        sock.close()
    await e2e.settle(gw)
    rows = await e2e.rows(
        gw,
        "SELECT SpanAttributes['loomgate.error_source'], SpanAttributes['error.type'],"
        " SpanAttributes['http.response.status_code'] FROM otel_traces"
        " WHERE SpanKind = 'Server' AND SpanAttributes['loomgate.request_id'] = {rid:String}",
        rid="stalled-reader-1",
    )
    assert rows == [("client", "client_timeout", "")]
    sla = await e2e.rows(gw, "SELECT sum(calls), sum(bad) FROM loomgate_sla_1m WHERE upstream = 'api'")
    assert sla == [(1, 0)]
