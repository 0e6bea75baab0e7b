"""The partner-facing reverse proxy: one handler, one pipeline, one call record per request.

Pipeline (each step may end the request with a JSON error from ``gateway.errors``):

1. request id (a valid incoming ``X-Request-Id`` is reused) and W3C trace context;
2. path normalisation (400 for paths that could escape their route) and header bytes: a header value
   that is not UTF-8 is 400 ``invalid_header_encoding`` (``gateway.headers``: the upstream could not be
   sent the bytes the gateway checked);
3. authentication (401) -- *before* routing, so unauthenticated callers cannot probe which routes exist;
   an address that made ``limits.auth_failure_burst`` failed attempts is refused first (429
   ``auth_throttled``, ``gateway.auth_throttle``) until its bucket refills, before any key is hashed;
   more than one credential (``Authorization`` or ``X-Api-Key`` repeated, or both with different keys) is
   400 ``ambiguous_credentials``, decided before any key is looked up;
4. route match (404, 405 with ``Allow``);
5. per-partner rate limit (429 with ``Retry-After``);
6. artisan id from the path, a header, the query or the JSON body (400 when required and missing).
   Read exactly once (``gateway.scoping``): carried twice -- a header in any case or an underscore
   spelling, a repeated query key, a JSON key repeated on the looked-up path -- or padded with
   whitespace, it is 400 ``ambiguous_artisan``, never "first wins", because the upstream may read the
   other copy.  A repeated sync-lag source is 400 ``ambiguous_sync_lag`` likewise;
7. scope: the partner must be allowed to act for that artisan (403; the upstream never sees the request);
8. the upstream's circuit breaker (503 with ``Retry-After`` while open);
   ``Expect: 100-continue`` is answered only once the body is actually wanted (after the checks above,
   or after the artisan checks for routes that read the JSON body), so rejected uploads are never sent;
9. the upstream call, streaming the request body in and the response body back out.

Bodies stream both ways, exactly as received: the listener does not inflate compressed request bodies,
so a gzip upload reaches the upstream as the same bytes, length and ``Content-Encoding``.  The only
buffered bodies are those a route needs to look into (artisan id or sync-lag time in the JSON body),
bounded by the route's ``max_body_size``; a compressed one is read from a private inflated copy, bounded
by the same limit after decompression (``gateway.request_body``; other codings are 415 there).

Time waiting on the client -- a slow upload, or ``write`` blocked on a slow reader -- stops the upstream's
clock (``gateway.call_limits``): it never makes an upstream time out and never reaches the breaker.  A
client that sends no body bytes for ``limits.body_idle_timeout`` gets 408 (the listener's limit, for
every body read); one that stops reading the response for ``limits.client_idle_timeout`` has its
connection closed.  Both are recorded as ``client_timeout`` with source ``client``.

Circuit breaker outcomes: connect errors, timeouts, broken responses (including an upstream dying
mid-body) and upstream 502/503/504 count as failures.  Other 5xx are left alone: they are usually about
one request, and counting them would let a single partner open the circuit for everyone.

The upstream call and its pool live in ``gateway.upstream_call``, the response relay in
``gateway.response_relay`` and the per-request state in ``gateway.call_state``.

Responses: status, reason, headers (repeated ones included) and bytes pass through; hop-by-hop headers
are dropped and ``Via`` / ``X-Request-Id`` added.  ``Content-Length`` is kept when the upstream sent one
(and the headers then leave together with the first body bytes, one write instead of two), otherwise the
body is relayed chunked.  aiohttp adds ``Date``/``Server`` when the upstream sent none, and
``Content-Type: application/octet-stream`` to a non-empty body the upstream left untyped.

Telemetry: exactly one ``CallRecord`` per request that reached this handler, submitted once the response
is finished or aborted.  Status 0 means the client connection was aborted: ``client_abort`` when the client
went away and ``client_timeout`` when it stalled (both source ``client``: neither the gateway's nor the
upstream's fault, and left out of the upstream's availability), ``upstream_aborted`` when the upstream
broke off after the response had started (the client connection is closed so it sees an incomplete
response).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import monotonic_ns, time_ns
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader

from collectors.record import OTHER_METHOD, CallRecord, RecordSink
from gateway import errors
from gateway.auth import KeyRing, extract_key
from gateway.auth_throttle import AuthThrottle
from gateway.call_limits import LimitClock
from gateway.call_state import Call as _Call
from gateway.call_state import ClientGone as _ClientGone
from gateway.config import Config, Partner, Route
from gateway.headers import new_span_id, new_trace_id, parse_traceparent, request_id, undecodable_header
from gateway.ratelimit import RateLimiter
from gateway.request_body import json_document
from gateway.routing import RouteTable, normalize_path
from gateway.scoping import (
    MAX_ARTISAN_ID_LEN,
    Lookup,
    artisan_error,
    artisan_of,
    artisan_value,
    lookup_once,
    parse_source_time_ms,
    single_credential,
    sync_lag,
)
from gateway.upstream_call import RoutePlan, UpstreamPool, expects_continue, forward, send_continue

log = logging.getLogger("loomgate.proxy")

__all__ = ["MAX_ARTISAN_ID_LEN", "Proxy", "UpstreamPool", "artisan_value", "parse_source_time_ms", "sync_lag"]

_MAX_RECORDED_PATH = 1024


# ------------------------------------------------------------------------------------------ the proxy


class Proxy:
    """Routes, partners, limits and upstream pools, compiled once; ``handle`` serves every request."""

    def __init__(self, config: Config, sink: RecordSink) -> None:
        self.config = config
        self.sink = sink
        self.table = RouteTable(config.routes)
        self.keyring = KeyRing(config.partners)
        self.limiter = RateLimiter(config.partners)
        self.auth_throttle = AuthThrottle.from_limits(config.limits, "partner")
        self.upstreams: dict[str, UpstreamPool] = {u.name: UpstreamPool(u) for u in config.upstreams}
        self.plans: dict[str, RoutePlan] = {r.name: self._plan(r) for r in config.routes}
        self.max_skew_ms = config.telemetry.sync_lag_max_skew * 1000.0
        self.client_idle = config.limits.client_idle_timeout
        self.inflight = 0
        self.requests_total = 0
        self.draining = False
        self._clock: LimitClock | None = None  # upstream time limits; set by start(), on the running loop

    def _plan(self, route: Route) -> RoutePlan:
        artisan = Lookup.of(route.artisan) if route.artisan else None
        lag = Lookup.of(route.sync_lag) if route.sync_lag else None
        buffer_body = (artisan is not None and artisan.source == "json") or (
            lag is not None and lag.source == "json"
        )
        pool = self.upstreams[route.upstream]
        return RoutePlan(route, pool, artisan, lag, buffer_body, route.max_body_size)

    def gauges(self) -> dict[str, Any]:
        """Low-cardinality live values for telemetry's gauges (read once per batch, not per request)."""
        return {
            "active_requests": self.inflight,
            "circuit_states": {name: pool.breaker.state for name, pool in self.upstreams.items()},
        }

    async def start(self) -> None:
        # Made here, not per request: asyncio.get_running_loop() makes a getpid() system call each time.
        self._clock = LimitClock(asyncio.get_running_loop())
        for pool in self.upstreams.values():
            pool.open_session()

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.upstreams.values()))
        if self._clock is not None:
            self._clock.close()

    # ------------------------------------------------------------------------------------ entry point

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        t0 = monotonic_ns()
        c = _Call(time_ns(), t0)
        self.inflight += 1
        self.requests_total += 1
        try:
            return await self._serve(request, c)
        except errors.GatewayError as exc:
            return await self._send_error(request, c, exc)
        except _ClientGone:
            return self._aborted(request, c, "client_abort", "client")
        except asyncio.CancelledError:
            c.status, c.error_type, c.error_source = 0, "shutdown", "gateway"
            raise
        except Exception:
            log.exception("internal error while proxying request %s", c.request_id)
            return await self._send_error(request, c, errors.GatewayError("internal gateway error"))
        finally:
            self.inflight -= 1
            self.sink.submit(c.record(request, monotonic_ns() - t0))

    def record_protocol_error(
        self, request: web.BaseRequest, status: int, code: str, rid: str, duration_ns: int
    ) -> None:
        """The call record of a request the HTTP parser rejected (it never reached ``handle``).

        Its method is unknown: ``_OTHER``, which the span rows name ``HTTP`` (HTTP semantic conventions).
        ``duration_ns`` runs from the first byte of the request to the error response (gateway.server).
        """
        self.requests_total += 1
        trace_id = new_trace_id()
        self.sink.submit(
            CallRecord(
                time_ns() - duration_ns, duration_ns, trace_id, new_span_id(), "", OTHER_METHOD, "", "", "",
                status, code, "gateway", "", "", "", "", 0, 0, None, False, "", request.remote or "", "", 0,
                0, rid, "http", 0,
            )
        )  # fmt: skip

    # --------------------------------------------------------------------------------------- pipeline

    async def _serve(self, request: web.BaseRequest, c: _Call) -> web.StreamResponse:
        headers = request.headers
        c.request_id = request_id(headers.get("X-Request-Id"))
        tp = headers.get("traceparent")
        parsed = parse_traceparent(tp) if tp else None
        if parsed is None:
            c.trace_id = new_trace_id()
        else:
            c.trace_id, c.parent_span_id, c.flags = parsed
        c.span_id = new_span_id()

        raw_path, _, raw_query = request.raw_path.partition("?")
        c.path = raw_path[:_MAX_RECORDED_PATH]  # what is recorded if the path is rejected below
        if request.method == "CONNECT":  # the rest of the stream would be tunnel bytes: close after answering
            c.force_close = True
            raise errors.MethodNotAllowed("CONNECT is not supported: the gateway does not open tunnels", [])
        path = normalize_path(raw_path)
        if path is not raw_path:  # the canonical fast path returns the same string
            c.path = path[:_MAX_RECORDED_PATH]

        bad = undecodable_header(headers)
        if bad is not None:
            raise errors.InvalidHeaderEncoding(
                f"header {bad!r} is not valid UTF-8: it cannot be forwarded as received"
            )

        address = request.remote or ""
        self.auth_throttle.check(address)  # before any key is hashed: a throttled guess costs nothing
        single_credential(headers)  # before any key is looked up: the answer reveals nothing about keys
        partner = self._authenticate(headers, address)
        c.partner_id = partner.id

        m = self.table.match(request.method, path)
        plan = self.plans[m.route.name]
        c.route_name = m.route.name
        c.route_template = m.route.path
        c.upstream = plan.upstream.name

        wait = self.limiter.check(partner.id)
        if wait > 0.0:
            raise errors.RateLimited(f"partner {partner.id} is over its rate limit", wait)

        declared = request.content_length
        if declared is not None and declared > plan.max_body:
            raise errors.PayloadTooLarge(
                f"request body of {declared} bytes is over the route's limit of {plan.max_body} bytes"
            )
        body: bytes | None = None
        doc: Any = None
        if plan.buffer_body and request.body_exists:
            await send_continue(request, c)
            body = await self._read_body(request.content, plan.max_body, c)
            # The body is forwarded as received; only a private copy is decoded to be read.
            doc = json_document(headers, body, plan.max_body)

        if plan.artisan is not None:
            artisan = artisan_of(plan.artisan, request, m, doc)
            if artisan is None:
                if plan.artisan.required:
                    raise artisan_error(plan.artisan, doc)
            else:
                c.artisan_id = artisan
                if not partner.allows(artisan):
                    raise errors.Forbidden(f"partner {partner.id} may not act for this artisan")

        lag_source = None
        if plan.sync_lag is not None:
            lag_source = lookup_once(plan.sync_lag, request, m, doc, errors.AmbiguousSyncLag)

        return await forward(
            request, c, plan, m, path, raw_query, partner, body, lag_source,
            clock=self._clock, client_idle=self.client_idle, max_skew_ms=self.max_skew_ms,
        )  # fmt: skip

    def _authenticate(self, headers: Mapping[str, str], address: str) -> Partner:
        key = extract_key(headers)
        if not key:
            raise errors.Unauthorized("missing API key: send Authorization: Bearer KEY or X-Api-Key: KEY")
        partner = self.keyring.authenticate(key)
        if partner is None:
            self.auth_throttle.failed(address)
            raise errors.Unauthorized("unknown API key")
        return partner

    # ----------------------------------------------------------------------------------------- bodies

    @staticmethod
    async def _read_body(content: StreamReader, limit: int, c: _Call) -> bytes:
        """The whole request body, for routes that look into it; bounded by the route's limit."""
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise errors.PayloadTooLarge(f"request body is over the route's limit of {limit} bytes")
                chunks.append(chunk)
        except errors.GatewayError:
            raise
        except ConnectionError:
            raise _ClientGone() from None
        except Exception:
            c.force_close = True
            raise errors.BadRequest("malformed request body") from None
        finally:
            c.request_body_size = size
        return b"".join(chunks)

    # ----------------------------------------------------------------------------------------- errors

    @staticmethod
    async def _send_error(request: web.BaseRequest, c: _Call, exc: errors.GatewayError) -> web.StreamResponse:
        if not c.request_id:
            c.request_id = request_id(None)
        resp = errors.error_response(exc, c.request_id)
        # A body that was never invited, or whose framing is broken, must not be waited for (aiohttp would
        # otherwise linger reading it): close the connection once the answer is out.
        close = c.force_close or (not c.continued and request.body_exists and expects_continue(request))
        if close:
            resp.force_close()
        c.fail(exc)
        body = resp.body
        c.response_body_size = len(body) if isinstance(body, bytes) else 0
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:
            c.status = 0
        if close:
            request.protocol.force_close()
        return resp

    @staticmethod
    def _aborted(request: web.BaseRequest, c: _Call, error_type: str, source: str) -> web.StreamResponse:
        c.status, c.error_type, c.error_source = 0, error_type, source
        transport = request.transport
        if transport is not None:
            transport.close()
        resp = web.Response(status=400)
        resp.force_close()
        return resp
