"""OpenTelemetry metrics through the gateway: ``http.server.request.duration`` counts match the requests per
route / method / status, metric attributes stay low-cardinality (no partner or artisan ids), and the gauges
the gateway reports (active requests, circuit-breaker state per upstream) and the pipeline counters land
in the Collector's metric tables."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from gateway.testing import (
    ACME_KEY,
    GLOBEX_KEY,
    RecordingUpstream,
    make_config,
    make_route,
    make_upstream,
    standard_partners,
    standard_routes,
)

HOLD_S = 0.6
HELD = 3
LISTINGS = "/v1/artisans/{artisan_id}/listings"
MISC = "/v1/misc/{name}"
DEAD = "/v1/dead/{name}"
# (method, path, key, status, http.route on the metric ("" when no route matched), times)
TRAFFIC: tuple[tuple[str, str, str | None, int, str, int], ...] = (
    ("GET", "/v1/artisans/a1/listings", ACME_KEY, 200, LISTINGS, 12),
    ("POST", "/v1/artisans/a2/listings", ACME_KEY, 200, LISTINGS, 5),
    ("GET", "/v1/misc/boom", GLOBEX_KEY, 500, MISC, 4),
    ("GET", "/v1/nothing", ACME_KEY, 404, "", 3),
    ("GET", "/v1/artisans/a1/listings", None, 401, "", 2),
    ("GET", "/v1/dead/x", ACME_KEY, 502, DEAD, 1),  # opens the circuit (one failure is enough here)
    ("GET", "/v1/dead/x", ACME_KEY, 503, DEAD, 2),  # circuit open
)
HIGH_CARDINALITY_KEYS = {"partner.id", "artisan.id", "url.path", "loomgate.request_id", "client.address",
                         "user_agent.original"}
IDS = ("acme", "globex", "a1", "a2")


def upstream_app() -> RecordingUpstream:
    async def boom(request: web.Request) -> web.Response:
        return web.json_response({"detail": "broken"}, status=500)

    async def hold(request: web.Request) -> web.Response:
        await asyncio.sleep(HOLD_S)
        return web.json_response({"held": True})

    up = RecordingUpstream()
    up.on("/v1/misc/boom", boom)
    up.on("/v1/misc/hold", hold)
    return up


async def test_metrics_match_requests_and_stay_low_cardinality(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(upstream_app())
    config = make_config(
        upstreams=[make_upstream("api", up.url),
                   make_upstream("dead", f"http://127.0.0.1:{e2e.closed_port()}", connect=0.5, failures=1,
                                 cooldown=120.0)],
        routes=[*standard_routes("api"), make_route("dead", DEAD, upstream="dead")],
        partners=standard_partners(), telemetry=e2e.telemetry(tmp_path))
    gw = await telemetry_gateway(config)
    url = gw.partner_url
    want: Counter[tuple[str, str, str]] = Counter()
    n = 0
    for method, path, key, status, route, times in TRAFFIC:
        for _ in range(times):
            s = await e2e.send(http, url, method, path, key=key, request_id=f"metric-{n}")
            assert s.status == status, (method, path)
            want[(route, method, str(status))] += 1
            n += 1
    # requests held in flight: a gauge snapshot (taken every batch window) sees them
    held = [asyncio.ensure_future(e2e.send(http, url, "GET", "/v1/misc/hold", key=ACME_KEY,
                                           request_id=f"hold-{i}")) for i in range(HELD)]
    await e2e.wait_for(lambda: up.hits_where(lambda r: r.raw_path == "/v1/misc/hold") == HELD, 10.0,
                       "held requests at the upstream")
    await asyncio.sleep(0.2)  # a few batch windows while all of them are in flight
    assert [s.status for s in await asyncio.gather(*held)] == [200] * HELD
    want[(MISC, "GET", "200")] += HELD
    n += HELD
    await e2e.settle(gw)

    hist = await e2e.rows(
        gw, "SELECT Attributes['http.route'], Attributes['http.request.method'], "
            "Attributes['http.response.status_code'], sum(Count), sum(Sum) FROM otel_metrics_histogram "
            "WHERE MetricName = 'http.server.request.duration' GROUP BY 1, 2, 3")
    assert {tuple(r[:3]): r[3] for r in hist} == want
    # the histogram sums the same durations the spans carry
    span_seconds = await e2e.scalar(
        gw, "SELECT sum(Duration) / 1e9 FROM otel_traces WHERE SpanKind = 'Server'")
    assert abs(sum(r[4] for r in hist) - span_seconds) < 1e-6 * max(1.0, span_seconds)
    assert await e2e.scalar(gw, e2e.SERVER_ROWS) == n

    for table in ("otel_metrics_histogram", "otel_metrics_gauge", "otel_metrics_sum"):
        keys, with_ids, total = (await e2e.rows(
            gw, f"SELECT groupUniqArrayArray(mapKeys(Attributes)), "
                f"countIf(hasAny(mapValues(Attributes), {{ids:Array(String)}})), count() FROM {table}",
            ids=list(IDS)))[0]
        assert total > 0, f"{table} is empty"
        assert not HIGH_CARDINALITY_KEYS & set(keys), (table, keys)
        assert with_ids == 0, table

    active_max = await e2e.scalar(
        gw, "SELECT max(Value) FROM otel_metrics_gauge WHERE MetricName = 'http.server.active_requests'")
    assert active_max >= HELD
    circuits = {u: (hi, last) for u, hi, last in await e2e.rows(
        gw, "SELECT Attributes['loomgate.upstream'], max(Value), argMax(Value, TimeUnix) "
            "FROM otel_metrics_gauge WHERE MetricName = 'loomgate.circuit_breaker.state' GROUP BY 1")}
    assert circuits == {"api": (0.0, 0.0), "dead": (2.0, 2.0)}  # 2 = open

    async def written_counter_caught_up() -> bool:
        value = await e2e.scalar(
            gw, "SELECT max(Value) FROM otel_metrics_sum WHERE MetricName = 'loomgate.telemetry.records' "
                "AND Attributes['loomgate.pipeline.outcome'] = 'written'")
        return value >= n

    await e2e.wait_for(written_counter_caught_up, 10.0, "pipeline counter of written records")
