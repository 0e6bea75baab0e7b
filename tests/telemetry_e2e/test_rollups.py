"""The per-minute rollups agree with the raw spans the gateway wrote, and both with the traffic sent:
counts per partner / artisan / route / upstream exactly, latency and sync-lag quantiles within the rollups'
documented bound of the raw samples (tests/quantile_bound.py)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from gateway.testing import ACME_KEY, GLOBEX_KEY, RecordingUpstream, standard_config
from tests.quantile_bound import within_bound

REQUESTS = 240
CONCURRENCY = 8
QUANTILES = (0.5, 0.9, 0.99)
PARTNERS = {"acme": (ACME_KEY, ("a1", "a2")), "globex": (GLOBEX_KEY, ("a1", "a2", "a3", "a4", "a5"))}

Key = tuple[str, str, str, str]  # partner, artisan, route, upstream


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    key: str | None
    headers: dict[str, str]
    expect: Key
    status: int
    lag: bool = False


def plan(rng: random.Random) -> list[Req]:
    """A deterministic mix: varied latencies, errors from both sides, sync lag on inventory writes."""
    out = []
    for _ in range(REQUESTS):
        partner = rng.choice(sorted(PARTNERS))
        key, artisans = PARTNERS[partner]
        artisan = rng.choice(artisans)
        kind = rng.choices(["search", "wait", "boom", "inventory", "forbidden", "notfound", "unauth"],
                           weights=[30, 20, 8, 20, 6, 6, 5])[0]
        ms = rng.randrange(0, 40)
        if kind == "search":
            out.append(Req("GET", f"/v1/search?artisan={artisan}&ms={ms}", key, {},
                           (partner, artisan, "search", "api"), 200))
        elif kind == "wait":
            out.append(Req("GET", f"/v1/misc/wait?ms={ms}", key, {}, (partner, "", "misc", "api"), 200))
        elif kind == "boom":
            out.append(Req("GET", "/v1/misc/boom", key, {}, (partner, "", "misc", "api"), 500))
        elif kind == "inventory":
            lag_s = rng.uniform(0.1, 5.0)
            out.append(Req("PUT", f"/v1/artisans/{artisan}/listings/l{ms}/inventory", key,
                           {"X-Source-Updated-At": f"{time.time() - lag_s:.3f}"},
                           (partner, artisan, "inventory", "api"), 200, lag=True))
        elif kind == "forbidden":
            out.append(Req("GET", "/v1/artisans/a9/listings", ACME_KEY, {},
                           ("acme", "a9", "listings", "api"), 403))
        elif kind == "notfound":
            out.append(Req("GET", "/v1/nothing/here", key, {}, (partner, "", "", ""), 404))
        else:
            out.append(Req("GET", f"/v1/search?artisan={artisan}", None, {}, ("", "", "", ""), 401))
    return out


def latency_upstream() -> RecordingUpstream:
    async def wait(request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
        return web.json_response({"waited": request.query.get("ms")})

    async def boom(request: web.Request) -> web.Response:
        return web.json_response({"detail": "broken"}, status=500)

    up = RecordingUpstream()
    up.on("/v1/search", wait)
    up.on("/v1/misc/wait", wait)
    up.on("/v1/misc/boom", boom)
    return up


def expected_counters(reqs: list[Req]) -> dict[Key, tuple[int, ...]]:
    """(calls, 4xx, 5xx, gateway errors, upstream errors, sync lags measured) per rollup key."""
    out: dict[Key, list[int]] = {}
    for r in reqs:
        c = out.setdefault(r.expect, [0] * 6)
        for i, flag in enumerate((True, 400 <= r.status < 500, r.status >= 500, 400 <= r.status < 500,
                                  r.status >= 500, r.lag)):
            c[i] += int(flag)
    return {k: tuple(v) for k, v in out.items()}


async def drive(e2e: SimpleNamespace, http: aiohttp.ClientSession, url: str, reqs: list[Req]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int, r: Req) -> None:
        async with sem:
            s = await e2e.send(http, url, r.method, r.path, key=r.key, request_id=f"roll-{i:04d}",
                               headers=r.headers, **({"json": {"qty": 1}} if r.method == "PUT" else {}))
        assert s.status == r.status, r

    await asyncio.gather(*(one(i, r) for i, r in enumerate(reqs)))


async def test_rollups_agree_with_raw_spans_and_the_traffic(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, telemetry_gateway: Any,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(latency_upstream())
    gw = await telemetry_gateway(standard_config(up.url, telemetry=e2e.telemetry(tmp_path)))
    reqs = plan(random.Random(4242))
    await drive(e2e, http, gw.partner_url, reqs)
    await e2e.settle(gw)

    raw = await e2e.rows(
        gw, "SELECT SpanAttributes['partner.id'], SpanAttributes['artisan.id'], "
            "SpanAttributes['loomgate.route'], SpanAttributes['loomgate.upstream'], count() "
            "FROM otel_traces WHERE SpanKind = 'Server' GROUP BY 1, 2, 3, 4")
    raw_counts = {tuple(r[:4]): r[4] for r in raw}
    assert raw_counts == Counter(r.expect for r in reqs)

    rollup = await e2e.rows(
        gw, "SELECT partner, artisan, route, upstream, sum(calls), sum(errors_4xx), sum(errors_5xx), "
            "sum(errors_gateway), sum(errors_upstream), sum(sync_lag_measured) "
            "FROM loomgate_calls_1m GROUP BY partner, artisan, route, upstream")
    assert {tuple(r[:4]): tuple(r[4:]) for r in rollup} == expected_counters(reqs)

    per_upstream = await e2e.rows(
        gw, "SELECT upstream, route, sum(calls) FROM loomgate_upstream_1m GROUP BY upstream, route")
    want_upstream = Counter((r.expect[3], r.expect[2]) for r in reqs)
    assert {(u, rt): n for u, rt, n in per_upstream} == want_upstream

    # Quantiles per route: merged sketches (over partners, artisans and minutes) against raw samples.
    durations: dict[str, list[float]] = {}
    lags: dict[str, list[float]] = {}
    for route, duration_ms, lag in await e2e.rows(
        gw, "SELECT SpanAttributes['loomgate.route'], Duration / 1e6, "
            "if(mapContains(SpanAttributes, 'loomgate.sync_lag_ms'), "
            "   toFloat64(SpanAttributes['loomgate.sync_lag_ms']), NULL) "
            "FROM otel_traces WHERE SpanKind = 'Server'"):
        durations.setdefault(route, []).append(duration_ms)
        if lag is not None:
            lags.setdefault(route, []).append(lag)
    assert sum(len(v) for v in lags.values()) == sum(r.lag for r in reqs)
    for table in ("loomgate_calls_1m", "loomgate_upstream_1m"):
        sketches = await e2e.rows(
            gw, f"SELECT route, quantilesBFloat16Merge{QUANTILES}(latency_hist_ms), "
                f"quantilesBFloat16Merge{QUANTILES}(sync_lag_hist_ms), sum(latency_sum_ms) "
                f"FROM {table} GROUP BY route")
        assert {r[0] for r in sketches} == set(durations)
        for route, lat_q, lag_q, latency_sum in sketches:
            assert abs(latency_sum - sum(durations[route])) < 1e-6 * max(1.0, latency_sum)
            for q, est in zip(QUANTILES, lat_q, strict=True):
                assert within_bound(est, durations[route], q), (table, "latency", route, q, est)
            if route in lags:
                for q, est in zip(QUANTILES, lag_q, strict=True):
                    assert within_bound(est, lags[route], q), (table, "sync lag", route, q, est)
    assert len(durations["inventory"]) >= 20 and len(durations["search"]) >= 20  # the checks above ran
