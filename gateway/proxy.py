"""The partner-facing reverse proxy: one handler, one pipeline, one call record per request.

Pipeline (each step may end the request with a JSON error from ``gateway.errors``):

1. request id (a valid incoming ``X-Request-Id`` is reused) and W3C trace context;
2. path normalisation (400 for paths that could escape their route);
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
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from time import monotonic_ns, time_ns
from typing import Any

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientSession,
    ClientTimeout,
    DummyCookieJar,
    TCPConnector,
    web,
)
from aiohttp.http import HttpVersion11
from aiohttp.streams import StreamReader
from yarl import URL

from collectors.record import CallRecord, RecordSink
from gateway import errors
from gateway.auth import KeyRing, extract_key
from gateway.auth_throttle import AuthThrottle
from gateway.call_limits import CallLimits, LimitClock
from gateway.circuit import CircuitBreaker
from gateway.config import Config, Partner, Route, Upstream
from gateway.headers import (
    format_traceparent,
    forward_request_headers,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    request_id,
    response_header_items,
)
from gateway.ratelimit import RateLimiter
from gateway.request_body import content_codings, decoded_copy
from gateway.routing import RouteMatch, RouteTable, build_upstream_url, normalize_path
from gateway.scoping import (
    MAX_ARTISAN_ID_LEN,
    Lookup,
    artisan_error,
    artisan_of,
    artisan_value,
    lookup_once,
    parse_json,
    parse_source_time_ms,
    single_credential,
    sync_lag,
)

log = logging.getLogger("loomgate.proxy")

__all__ = ["MAX_ARTISAN_ID_LEN", "Proxy", "UpstreamPool", "artisan_value", "parse_source_time_ms", "sync_lag"]

_MAX_RECORDED_PATH = 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_BREAKER_FAILURE_STATUSES = frozenset({502, 503, 504})
# Headers aiohttp would otherwise add on its own; the client's own values (or none) go through instead.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


# ------------------------------------------------------------------------------------- per-route plans


class UpstreamPool:
    """An upstream's runtime state: base URL, circuit breaker and its own keep-alive connection pool."""

    __slots__ = ("base", "breaker", "config", "name", "session")

    def __init__(self, config: Upstream) -> None:
        self.config = config
        self.name = config.name
        self.base = URL(config.url)
        self.breaker = CircuitBreaker(config.name, config.circuit_breaker)
        self.session: ClientSession | None = None

    def open_session(self) -> ClientSession:
        t = self.config.timeouts
        self.session = ClientSession(
            connector=TCPConnector(limit=self.config.pool_size, keepalive_timeout=30.0),
            # Only the connect limit is aiohttp's; total and read are kept by CallLimits, far cheaper.
            timeout=ClientTimeout(total=None, sock_connect=t.connect, sock_read=None),
            auto_decompress=False,
            cookie_jar=DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            raise_for_status=False,
        )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything the handler needs about a route, computed once at start-up."""

    route: Route
    upstream: UpstreamPool
    artisan: Lookup | None
    sync_lag: Lookup | None
    buffer_body: bool  # the route looks into the JSON body
    max_body: int


# ----------------------------------------------------------------------------------- per-request state


class _SizedResponse(web.StreamResponse):
    """A relayed response of known length: its headers go out with the first body bytes, in one write.

    (Responses of unknown length, streams, keep aiohttp's default of sending headers at once.)
    """

    _send_headers_immediately = False


class _ClientGone(Exception):
    """The client connection broke while the gateway was reading from or writing to it."""


class _Call:
    """What is known about one request so far; becomes the CallRecord at the end."""

    __slots__ = (
        "artisan_id",
        "body_error",
        "client_span_id",
        "continued",
        "error_source",
        "error_type",
        "flags",
        "force_close",
        "parent_span_id",
        "partner_id",
        "path",
        "request_body_size",
        "request_id",
        "response_body_size",
        "route_name",
        "route_template",
        "span_id",
        "start_ns",
        "status",
        "sync_lag_invalid",
        "sync_lag_ms",
        "t0",
        "trace_id",
        "upstream",
        "upstream_duration_ns",
        "upstream_start_ns",
        "upstream_status",
    )

    def __init__(self, start_ns: int, t0: int) -> None:
        self.start_ns = start_ns
        self.t0 = t0
        self.request_id = ""
        self.trace_id = ""
        self.span_id = ""
        self.parent_span_id = ""
        self.flags = "01"
        self.client_span_id = ""
        self.path = ""
        self.route_template = ""
        self.route_name = ""
        self.status = 0
        self.error_type = ""
        self.error_source = ""
        self.partner_id = ""
        self.artisan_id = ""
        self.upstream = ""
        self.upstream_start_ns = 0
        self.upstream_duration_ns = 0
        self.upstream_status = 0
        self.sync_lag_ms: float | None = None
        self.sync_lag_invalid = False
        self.request_body_size = 0
        self.response_body_size = 0
        self.force_close = False
        self.continued = False
        self.body_error: BaseException | None = None

    def fail(self, exc: errors.GatewayError) -> None:
        self.status = exc.status
        self.error_type = exc.error_type
        self.error_source = exc.source

    def record(self, request: web.BaseRequest, duration_ns: int) -> CallRecord:
        headers = request.headers
        return CallRecord(
            self.start_ns,
            duration_ns,
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            request.method,
            self.route_template,
            self.route_name,
            self.path,
            self.status,
            self.error_type,
            self.error_source,
            self.partner_id,
            self.artisan_id,
            self.upstream,
            self.client_span_id,
            self.upstream_start_ns,
            self.upstream_duration_ns,
            self.sync_lag_ms,
            self.sync_lag_invalid,
            headers.get("Host", ""),
            request.remote or "",
            headers.get("User-Agent", ""),
            self.request_body_size,
            self.response_body_size,
            self.request_id,
            request.scheme,
            self.upstream_status,
        )


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
        self.plans: dict[str, _Plan] = {r.name: self._plan(r) for r in config.routes}
        self.max_skew_ms = config.telemetry.sync_lag_max_skew * 1000.0
        self.client_idle = config.limits.client_idle_timeout
        self.inflight = 0
        self.requests_total = 0
        self.draining = False
        self._clock: LimitClock | None = None  # upstream time limits; set by start(), on the running loop

    def _plan(self, route: Route) -> _Plan:
        artisan = Lookup.of(route.artisan) if route.artisan else None
        lag = Lookup.of(route.sync_lag) if route.sync_lag else None
        buffer_body = (artisan is not None and artisan.source == "json") or (
            lag is not None and lag.source == "json"
        )
        return _Plan(route, self.upstreams[route.upstream], artisan, lag, buffer_body, route.max_body_size)

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

    def record_protocol_error(self, request: web.BaseRequest, status: int, code: str, rid: str) -> None:
        """The call record of a request the HTTP parser rejected (it never reached ``handle``)."""
        self.requests_total += 1
        trace_id = new_trace_id()
        self.sink.submit(
            CallRecord(
                time_ns(), 0, trace_id, new_span_id(), "", "", "", "", "", status, code, "gateway",
                "", "", "", "", 0, 0, None, False, "", request.remote or "", "", 0, 0, rid, "http", 0,
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
            await _send_continue(request, c)
            body = await self._read_body(request.content, plan.max_body, c)
            # The body is forwarded as received; only a private copy is decoded to be read.
            codings = content_codings(headers.getall("Content-Encoding", ()))
            doc = parse_json(decoded_copy(body, codings, plan.max_body) if codings else body)

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

        return await self._forward(request, c, plan, m, path, raw_query, partner, body, lag_source)

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

    @staticmethod
    async def _stream_body(
        content: StreamReader, limit: int, c: _Call, limits: CallLimits
    ) -> AsyncIterator[bytes]:
        """The request body as it arrives, counted; stops the upload once it passes the route's limit."""
        size = 0
        while True:
            # A slow upload is the client's time, not the upstream's; limits.body_idle_timeout bounds it.
            limits.begin_client_wait(limited=False)
            try:
                chunk = await content.readany()
            except Exception as exc:
                # The HTTP client wraps whatever happens here; remember what really went wrong.
                c.body_error = exc
                raise
            finally:
                limits.end_client_wait()
            if not chunk:
                limits.owed_from_now()  # the whole request is out: the upstream's turn
                return
            size += len(chunk)
            c.request_body_size = size
            if size > limit:
                too_large = errors.PayloadTooLarge(f"request body is over the route's limit of {limit} bytes")
                c.body_error = too_large
                raise too_large
            yield chunk

    # --------------------------------------------------------------------------------------- upstream

    async def _forward(
        self,
        request: web.BaseRequest,
        c: _Call,
        plan: _Plan,
        m: RouteMatch,
        path: str,
        raw_query: str,
        partner: Partner,
        body: bytes | None,
        lag_source: Any,
    ) -> web.StreamResponse:
        pool = plan.upstream
        session = pool.session
        clock = self._clock
        if session is None or clock is None:  # listener still up while the pools close
            raise errors.UpstreamConnectError(f"upstream {pool.name} is shutting down")
        pool.breaker.before_call()
        healthy: bool | None = None  # the call's verdict on the upstream; None: no verdict
        t = pool.config.timeouts
        limits = clock.limits(t.total, t.read, self.client_idle)
        try:
            url = build_upstream_url(pool.base, plan.route, m, path, raw_query)
            c.client_span_id = span = new_span_id()
            fwd = forward_request_headers(
                request.headers,
                client_ip=request.remote or "",
                scheme=request.scheme,
                host=request.host,
                partner_id=partner.id,
                request_id=c.request_id,
                traceparent=format_traceparent(c.trace_id, span, c.flags),
            )
            data: Any = body
            owed = True  # the upstream owes an answer as soon as the request is out
            if body is None and request.body_exists:
                declared = request.content_length
                if declared is not None:
                    # Keep the client's framing: the server already holds the client to this length.
                    fwd["Content-Length"] = str(declared)
                await _send_continue(request, c)
                data = self._stream_body(request.content, plan.max_body, c, limits)
                owed = False  # not before the streamed body is all out

            up_t0 = monotonic_ns()
            c.upstream_start_ns = c.start_ns + (up_t0 - c.t0)
            try:
                limits.begin_wait(owed=owed)
                up = await session.request(request.method, url, headers=fwd, data=data, allow_redirects=False)
            except (TimeoutError, ClientError, OSError) as exc:
                c.upstream_duration_ns = monotonic_ns() - up_t0
                if c.body_error is not None:
                    raise _body_failure(c) from None
                healthy = False
                raise _upstream_failure(pool.name, exc) from None
            except asyncio.CancelledError:
                if not limits.timed_out():
                    raise
                c.upstream_duration_ns = monotonic_ns() - up_t0
                if limits.client_expired:  # the upload stalled: no verdict on the upstream
                    c.force_close = True
                    raise errors.ClientTimeout("request body upload stalled") from None
                healthy = False
                raise _upstream_failure(pool.name, TimeoutError()) from None
            finally:
                limits.end_wait()
            if c.body_error is not None:  # the upstream answered before the upload failed
                up.close()
                raise _body_failure(c)

            hdr_ns = monotonic_ns()
            status = up.status
            c.upstream_status = status
            if status >= 500:  # passed through as is, but it is the upstream's failure
                c.error_type, c.error_source = str(status), "upstream"
            healthy = status not in _BREAKER_FAILURE_STATUSES
            if lag_source is not None and 200 <= status < 300:
                source_ms = parse_source_time_ms(lag_source)
                if source_ms is not None:
                    ack_ms = (c.start_ns + (hdr_ns - c.t0)) / 1e6
                    c.sync_lag_ms, c.sync_lag_invalid = sync_lag(ack_ms, source_ms, self.max_skew_ms)
            resp, upstream_ok = await self._relay(request, c, up, status, limits)
            c.upstream_duration_ns = monotonic_ns() - up_t0
            if not upstream_ok:
                healthy = False
            return resp
        finally:
            limits.close()
            if healthy is None:
                pool.breaker.record_cancelled()
            elif healthy:
                pool.breaker.record_success()
            else:
                pool.breaker.record_failure()

    async def _relay(
        self, request: web.BaseRequest, c: _Call, up: Any, status: int, limits: CallLimits
    ) -> tuple[web.StreamResponse, bool]:
        """Stream the upstream's response to the client; False when the upstream broke off mid-body."""
        length = up.headers.get("Content-Length")
        items = response_header_items(up.headers)  # framing headers dropped: the proxy sets them
        if length is not None:
            items.append(("Content-Length", length))  # else aiohttp sends chunked
        factory = web.StreamResponse if length is None else _SizedResponse
        resp = factory(status=status, reason=up.reason, headers=items)  # one header mapping built
        resp.headers["X-Request-Id"] = c.request_id  # replaces one the upstream sent
        try:
            limits.begin_client_wait()
            await resp.prepare(request)
        except ConnectionError:
            up.close()
            raise _ClientGone() from None
        except asyncio.CancelledError:
            if not limits.timed_out():
                raise
            self._abort(request, resp, up, c, "client_timeout", "client")
            return resp, True
        finally:
            limits.end_client_wait()
        sent = 0
        if request.method != "HEAD" and status not in _NO_BODY_STATUSES and status >= 200:
            read = up.content.readany
            at_eof = up.content.at_eof
            write = resp.write
            while True:
                try:
                    limits.begin_wait(owed=True)
                    chunk = await read()
                except (TimeoutError, ClientError, OSError):
                    c.response_body_size = sent
                    self._abort(request, resp, up, c, "upstream_aborted", "upstream")
                    return resp, False
                except asyncio.CancelledError:
                    if not limits.timed_out():
                        raise
                    c.response_body_size = sent
                    self._abort(request, resp, up, c, "upstream_aborted", "upstream")
                    return resp, False
                finally:
                    limits.end_wait()
                if not chunk:
                    break
                limits.begin_client_wait()  # blocked on a slow reader: the client's time, not the upstream's
                try:
                    await write(chunk)
                except ConnectionError:
                    c.response_body_size = sent
                    self._abort(request, resp, up, c, "client_abort", "client")
                    return resp, True
                except asyncio.CancelledError:
                    if not limits.timed_out():
                        raise
                    c.response_body_size = sent
                    self._abort(request, resp, up, c, "client_timeout", "client")
                    return resp, True
                finally:
                    limits.end_client_wait()
                sent += len(chunk)
                if at_eof():  # the upstream's body is complete: no need to wait for its end marker
                    break
        c.response_body_size = sent
        limits.begin_client_wait()
        try:
            await resp.write_eof()
        except ConnectionError:
            self._abort(request, resp, up, c, "client_abort", "client")
            return resp, True
        except asyncio.CancelledError:
            if not limits.timed_out():
                raise
            self._abort(request, resp, up, c, "client_timeout", "client")
            return resp, True
        finally:
            limits.end_client_wait()
        up.release()
        c.status = status
        return resp, True

    @staticmethod
    def _abort(
        request: web.BaseRequest, resp: web.StreamResponse, up: Any, c: _Call, error_type: str, source: str
    ) -> None:
        """Close the client connection so a broken response can never look complete."""
        up.close()
        resp.force_close()
        transport = request.transport
        if transport is not None:
            transport.close()
        c.status, c.error_type, c.error_source = 0, error_type, source

    # ----------------------------------------------------------------------------------------- errors

    @staticmethod
    async def _send_error(request: web.BaseRequest, c: _Call, exc: errors.GatewayError) -> web.StreamResponse:
        if not c.request_id:
            c.request_id = request_id(None)
        resp = errors.error_response(exc, c.request_id)
        # A body that was never invited, or whose framing is broken, must not be waited for (aiohttp would
        # otherwise linger reading it): close the connection once the answer is out.
        close = c.force_close or (not c.continued and request.body_exists and _expects_continue(request))
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


# ------------------------------------------------------------------------------------------- helpers


def _expects_continue(request: web.BaseRequest) -> bool:
    return request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue"


async def _send_continue(request: web.BaseRequest, c: _Call) -> None:
    """Answer ``Expect: 100-continue`` now that the body is wanted; other expectations are ignored."""
    if _expects_continue(request):
        c.continued = True
        try:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except ConnectionError:
            raise _ClientGone() from None
        request.writer.output_size = 0  # the interim response is not the response


def _body_failure(c: _Call) -> BaseException:
    """What to tell the client when reading its body failed during the upload."""
    exc = c.body_error
    if isinstance(exc, errors.GatewayError):
        return exc
    if isinstance(exc, ConnectionError | asyncio.CancelledError):
        return _ClientGone()
    c.force_close = True
    return errors.BadRequest("malformed request body")


def _upstream_failure(name: str, exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return errors.UpstreamTimeout(f"upstream {name} did not answer in time")
    if isinstance(exc, ClientConnectorError):
        return errors.UpstreamConnectError(f"cannot connect to upstream {name}")
    return errors.UpstreamBadResponse(f"upstream {name} closed the connection or sent an invalid response")
