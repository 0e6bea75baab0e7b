"""Graceful shutdown through the gateway: requests still in flight when ``run_gateway`` exits are recorded,
and their rows are in the store when a new gateway opens the same data directory.

The batch window is an hour, so nothing is cut while the gateway runs: every row found afterwards was
flushed by the shutdown itself.  Requests that finish within the drain timeout are recorded with their
answer; the ones still stuck at the upstream when it expires are cancelled and recorded as ``shutdown``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from collectors.record import ListSink
from gateway.server import run_gateway
from gateway.testing import ACME_KEY, RecordingUpstream, standard_config

DONE, FINISHING, STUCK = 5, 6, 2
DRAIN_TIMEOUT = 1.5
FINISH_S = 0.5  # < DRAIN_TIMEOUT: finishes while the gateway drains
STUCK_S = 5.0  # well over DRAIN_TIMEOUT: cancelled by the drain


def slow_upstream() -> RecordingUpstream:
    def sleeper(seconds: float) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await asyncio.sleep(seconds)
            return web.json_response({"slept": seconds})

        return handler

    up = RecordingUpstream()
    up.on("/v1/misc/finishing", sleeper(FINISH_S))
    up.on("/v1/misc/stuck", sleeper(STUCK_S))
    return up


async def test_requests_in_flight_at_shutdown_are_in_the_store_after_restart(
    tmp_path: Path, e2e: SimpleNamespace, upstream_server: Any, http: aiohttp.ClientSession,
) -> None:
    up = await upstream_server(slow_upstream())
    config = e2e.with_limits(
        standard_config(up.url, telemetry=e2e.telemetry(tmp_path, batch_window=3600.0)),
        drain_timeout=DRAIN_TIMEOUT)

    async with run_gateway(config) as gw:
        url = gw.partner_url
        for i in range(DONE):
            s = await e2e.send(http, url, "GET", "/v1/artisans/a1/listings", key=ACME_KEY,
                               request_id=f"done-{i}")
            assert s.status == 200
        inflight = [asyncio.ensure_future(e2e.send(http, url, "GET", f"/v1/misc/{kind}", key=ACME_KEY,
                                                   request_id=f"{kind}-{i}"))
                    for kind, n in (("finishing", FINISHING), ("stuck", STUCK)) for i in range(n)]
        await e2e.wait_for(lambda: up.hits == DONE + FINISHING + STUCK, 10.0, "requests at the upstream")
        assert gw.inflight == FINISHING + STUCK
        # nothing has been cut yet: the store holds no span
        assert await e2e.scalar(gw, e2e.SERVER_ROWS) == 0
        tel = e2e.tel_of(gw)
    # run_gateway has drained the listener and closed telemetry
    outcomes = await asyncio.gather(*inflight, return_exceptions=True)
    finished = [o for o in outcomes[:FINISHING] if not isinstance(o, BaseException)]
    assert [s.status for s in finished] == [200] * FINISHING, outcomes
    assert all(isinstance(o, aiohttp.ClientError) for o in outcomes[FINISHING:]), outcomes[FINISHING:]
    total = DONE + FINISHING + STUCK
    assert tel.counters()["written"] == total

    async with run_gateway(config) as gw2:  # same data directory: the same embedded store
        got = await e2e.rows(
            gw2, "SELECT splitByChar('-', SpanAttributes['loomgate.request_id'])[1] AS kind, count(), "
                 "groupUniqArray(SpanAttributes['http.response.status_code']), "
                 "groupUniqArray(SpanAttributes['error.type']) "
                 "FROM otel_traces WHERE SpanKind = 'Server' GROUP BY kind ORDER BY kind")
        assert got == [("done", DONE, ["200"], [""]), ("finishing", FINISHING, ["200"], [""]),
                       ("stuck", STUCK, [""], ["shutdown"])]
        assert await e2e.scalar(gw2, e2e.SERVER_IDS) == total


async def test_drain_timeout_bounds_how_long_in_flight_requests_run(
    e2e: SimpleNamespace, upstream_server: Any, http: aiohttp.ClientSession,
) -> None:
    """``limits.drain_timeout`` is the documented bound on the wait for in-flight requests at shutdown
    (gateway/server.py, gateway/config.py): a request still running when it expires is cancelled then."""
    drain = 1.0
    up = await upstream_server(slow_upstream())
    config = e2e.with_limits(standard_config(up.url), drain_timeout=drain)
    sink = ListSink()
    ended: list[float] = []
    async with run_gateway(config, sink=sink) as gw:
        stuck = asyncio.ensure_future(e2e.send(http, gw.partner_url, "GET", "/v1/misc/stuck", key=ACME_KEY,
                                               request_id="stuck-drain"))
        stuck.add_done_callback(lambda _: ended.append(time.monotonic()))
        await e2e.wait_for(lambda: up.hits == 1, 10.0, "request at the upstream")
        drain_started = time.monotonic()
    assert isinstance((await asyncio.gather(stuck, return_exceptions=True))[0], aiohttp.ClientError)
    assert [(r.status, r.error_type) for r in sink.records] == [(0, "shutdown")]
    cancelled_after = ended[0] - drain_started
    assert cancelled_after < drain + 0.5, f"in-flight request cancelled {cancelled_after:.2f} s into a " \
                                          f"drain with drain_timeout={drain} s"
