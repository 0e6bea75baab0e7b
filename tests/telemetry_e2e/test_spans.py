"""Requests of every outcome through a running gateway become exactly one SERVER span row each in
``otel_traces`` (plus a CLIENT child row exactly where the upstream was called), with the right name,
attributes, duration and trace context, and no credential anywhere in the store."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from gateway.config import Config
from gateway.testing import (
    ACME_KEY,
    GLOBEX_KEY,
    TINY_KEY,
    RecordingUpstream,
    make_config,
    make_route,
    make_upstream,
    standard_partners,
    standard_routes,
)

UNKNOWN_KEY = "not-a-partner-key-5e6f7a"
READ_TIMEOUT = 0.3
SLOW_OK = 0.15
LISTINGS = "/v1/artisans/{artisan_id}/listings"


@dataclass(frozen=True)
class Case:
    """One request and the SERVER span it must produce (None: the attribute must be absent)."""

    method: str
    path: str
    key: str | None
    status: int
    span_name: str
    partner: str | None
    artisan: str | None
    route: str | None
    upstream: str | None
    error_type: str | None = None
    error_source: str | None = None
    called: bool = False  # a CLIENT child span for the upstream call
    min_duration: float = 0.0
    key_header: str = "Authorization"
    options: dict[str, Any] = field(default_factory=dict)


def gateway_config(upstream_url: str, dead_port: int, tcfg: Any) -> Config:
    """The standard routes on upstream ``api``, plus a route to a slow upstream (short read timeout) and
    one to an upstream nothing listens on."""
    routes = [*standard_routes("api"), make_route("slow", "/v1/slow/{name}", upstream="slow"),
              make_route("dead", "/v1/dead/{name}", upstream="dead")]
    upstreams = [make_upstream("api", upstream_url),
                 make_upstream("slow", upstream_url, read=READ_TIMEOUT, total=5.0),
                 make_upstream("dead", f"http://127.0.0.1:{dead_port}", connect=0.5)]
    return make_config(upstreams=upstreams, routes=routes, partners=standard_partners(), telemetry=tcfg)


def recording_upstream() -> RecordingUpstream:
    async def boom(request: web.Request) -> web.Response:
        return web.json_response({"detail": "upstream exploded"}, status=500)

    async def slow_ok(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_OK)
        return web.json_response({"ok": True})

    async def late(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)  # past the read timeout; over before the upstream stops
        return web.json_response({"late": True})

    up = RecordingUpstream()
    up.on("/v1/misc/boom", boom)
    up.on("/v1/misc/slowok", slow_ok)
    up.on("/v1/slow/late", late)
    return up


CASES: tuple[Case, ...] = (
    Case("GET", "/v1/artisans/a1/listings", ACME_KEY, 200, f"GET {LISTINGS}", "acme", "a1", "listings",
         "api", called=True),
    Case("POST", "/v1/artisans/a2/listings", ACME_KEY, 200, f"POST {LISTINGS}", "acme", "a2", "listings",
         "api", called=True, key_header="X-Api-Key", options={"data": b"p" * 321}),
    Case("GET", "/v1/misc/slowok", GLOBEX_KEY, 200, "GET /v1/misc/{name}", "globex", None, "misc", "api",
         called=True, min_duration=SLOW_OK),
    Case("GET", "/v1/shop", ACME_KEY, 200, "GET /v1/shop", "acme", "a2", "shop", "api", called=True,
         options={"headers": {"X-Artisan-Id": "a2"}}),
    Case("GET", "/v1/search?artisan=a1&q=vase", ACME_KEY, 200, "GET /v1/search", "acme", "a1", "search",
         "api", called=True),
    Case("GET", "/v1/misc/boom", GLOBEX_KEY, 500, "GET /v1/misc/{name}", "globex", None, "misc", "api",
         "500", "upstream", called=True),
    Case("GET", "/v1/artisans/a1/listings", None, 401, "GET", None, None, None, None, "unauthorized",
         "gateway"),
    Case("GET", "/v1/artisans/a1/listings", UNKNOWN_KEY, 401, "GET", None, None, None, None, "unauthorized",
         "gateway"),
    Case("GET", "/v1/artisans/a9/listings", ACME_KEY, 403, f"GET {LISTINGS}", "acme", "a9", "listings", "api",
         "forbidden", "gateway"),
    Case("GET", "/v1/nowhere", ACME_KEY, 404, "GET", "acme", None, None, None, "route_not_found", "gateway"),
    Case("PUT", "/v1/artisans/a1/listings", ACME_KEY, 405, "PUT", "acme", None, None, None,
         "method_not_allowed", "gateway"),
    Case("POST", "/v1/orders", GLOBEX_KEY, 413, "POST /v1/orders", "globex", None, "orders", "api",
         "payload_too_large", "gateway", options={"data": b"x" * 70_000}),
    Case("POST", "/v1/orders", GLOBEX_KEY, 400, "POST /v1/orders", "globex", None, "orders", "api",
         "bad_request", "gateway",
         options={"data": b"{not json", "headers": {"Content-Type": "application/json"}}),
    # partner "tiny" may burst 2 requests: the third is rate limited
    Case("GET", "/v1/misc/t", TINY_KEY, 200, "GET /v1/misc/{name}", "tiny", None, "misc", "api", called=True),
    Case("GET", "/v1/misc/t", TINY_KEY, 200, "GET /v1/misc/{name}", "tiny", None, "misc", "api", called=True),
    Case("GET", "/v1/misc/t", TINY_KEY, 429, "GET /v1/misc/{name}", "tiny", None, "misc", "api",
         "rate_limited", "gateway"),
    Case("GET", "/v1/dead/x", ACME_KEY, 502, "GET /v1/dead/{name}", "acme", None, "dead", "dead",
         "connect_error", "upstream", called=True),
    Case("GET", "/v1/slow/late", ACME_KEY, 504, "GET /v1/slow/{name}", "acme", None, "slow", "slow",
         "timeout", "upstream", called=True, min_duration=READ_TIMEOUT),
)
OPTIONAL_ATTRS = ("partner.id", "artisan.id", "loomgate.route", "loomgate.upstream", "http.route",
                  "error.type", "loomgate.error_source")
SLACK_NS = 50_000_000  # the gateway stops its clock a moment after the client may have read the answer
TIMER_EARLY_NS = 10_000_000  # event-loop timers (sleeps, read timeouts) may fire a little early


def expected_attrs(case: Case, request_id: str) -> dict[str, str | None]:
    route_template = case.span_name.partition(" ")[2] or None
    return {
        "http.request.method": case.method,
        "url.path": case.path.partition("?")[0],
        "http.response.status_code": str(case.status),
        "loomgate.request_id": request_id,
        "partner.id": case.partner,
        "artisan.id": case.artisan,
        "loomgate.route": case.route,
        "loomgate.upstream": case.upstream,
        "http.route": route_template,
        "error.type": case.error_type,
        "loomgate.error_source": case.error_source,
    }


async def drive(e2e: SimpleNamespace, http: aiohttp.ClientSession, url: str
                ) -> list[tuple[Case, Any, tuple[str, str] | None]]:
    """Send every case once, in order; odd ones continue an incoming trace context."""
    rng = random.Random(20240611)
    sent = []
    for i, case in enumerate(CASES):
        headers = dict(case.options.get("headers", {}))
        trace: tuple[str, str] | None = None
        if i % 2:
            trace_id, parent, header = e2e.trace_context(rng)
            headers["traceparent"] = header
            trace = (trace_id, parent)
        options = {k: v for k, v in case.options.items() if k != "headers"}
        s = await e2e.send(http, url, case.method, case.path, key=case.key, request_id=f"mixed-{i:03d}",
                           headers=headers, key_header=case.key_header, **options)
        assert s.status == case.status, (i, case)
        sent.append((case, s, trace))
    return sent


async def test_every_outcome_is_one_server_span_with_the_right_attributes(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(recording_upstream())
    gw = await telemetry_gateway(gateway_config(up.url, e2e.closed_port(), e2e.telemetry(tmp_path)))
    sent = await drive(e2e, http, gw.partner_url)
    await e2e.settle(gw)

    server = await e2e.rows(
        gw, "SELECT SpanAttributes['loomgate.request_id'], TraceId, SpanId, ParentSpanId, SpanName, "
            "toUnixTimestamp64Nano(Timestamp), Duration, StatusCode, SpanAttributes, ServiceName "
            "FROM otel_traces WHERE SpanKind = 'Server'")
    assert len(server) == len(CASES), "exactly one SERVER span per request"
    by_rid = {r[0]: r for r in server}
    assert len(by_rid) == len(CASES)
    clients = await e2e.rows(
        gw, "SELECT ParentSpanId, TraceId, SpanId, toUnixTimestamp64Nano(Timestamp), Duration, StatusCode, "
            "SpanAttributes FROM otel_traces WHERE SpanKind = 'Client'")
    client_by_parent = {r[0]: r for r in clients}
    assert len(client_by_parent) == len(clients)

    for case, s, trace in sent:
        row = by_rid[s.request_id]
        _, trace_id, span_id, parent, name, start_ns, duration, status_code, attrs, service = row
        label = f"{case.method} {case.path} -> {case.status}"
        assert name == case.span_name, label
        assert service == e2e.SERVICE
        for key, want in expected_attrs(case, s.request_id).items():
            assert attrs.get(key) == want, (label, key, attrs)
        assert "loomgate.sync_lag_ms" not in attrs and "loomgate.sync_lag_invalid" not in attrs
        assert status_code == ("Error" if case.status >= 500 else "Unset"), label
        # trace context continues the incoming traceparent; otherwise a new trace starts here
        if trace is not None:
            assert (trace_id, parent) == trace, label
        else:
            assert len(trace_id) == 32 and int(trace_id, 16) and parent == "", label
        assert len(span_id) == 16 and span_id != parent
        # duration: nanoseconds, within what the client measured around the request
        assert s.start_ns <= start_ns <= s.start_ns + s.elapsed_ns, label
        low = case.min_duration * 1e9 - TIMER_EARLY_NS
        assert low <= duration <= s.elapsed_ns + SLACK_NS, (label, duration, s.elapsed_ns)
        assert duration > 0
        client = client_by_parent.get(span_id)
        if not case.called:
            assert client is None, label
            assert "loomgate.upstream_duration_ms" not in attrs
            continue
        assert client is not None, f"{label}: no CLIENT span"
        _, c_trace, c_span, c_start, c_duration, c_status, c_attrs = client
        assert c_trace == trace_id and len(c_span) == 16 and c_span != span_id
        assert start_ns <= c_start and c_start + c_duration <= start_ns + duration + SLACK_NS, label
        assert c_attrs["loomgate.upstream"] == case.upstream
        assert c_status == ("Error" if case.status >= 500 else "Unset"), label
        assert 0 < float(attrs["loomgate.upstream_duration_ms"]) <= duration / 1e6
    assert len(clients) == sum(case.called for case in CASES)
    await assert_no_credential_stored(e2e, gw)


async def assert_no_credential_stored(e2e: SimpleNamespace, gw: Any) -> None:
    """No API key (sent as Bearer token or X-Api-Key, valid or not) in any column of any row."""
    secrets = (ACME_KEY, GLOBEX_KEY, TINY_KEY, UNKNOWN_KEY, "Bearer")
    seen = 0
    for table in ("otel_traces", "otel_metrics_histogram", "otel_metrics_gauge", "otel_metrics_sum"):
        # every column of every row, maps and arrays included, as text
        for (row,) in await e2e.rows(gw, f"SELECT toString(tuple(*)) FROM {table}"):
            seen += 1
            for secret in secrets:
                assert secret not in row, (table, secret)
    assert seen >= len(CASES)
    # the text searched really holds the values: the request ids are found in it
    assert await e2e.scalar(gw, "SELECT count() FROM otel_traces WHERE "
                                "position(toString(tuple(*)), {rid:String}) > 0", rid="mixed-000") >= 1
