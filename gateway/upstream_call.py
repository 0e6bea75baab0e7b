"""The call to the upstream: its pool, the request as checked, the upload streamed, the verdict.

Each upstream has its own keep-alive pool and circuit breaker.  The request body is streamed as received
(the client's framing kept) unless the route buffered it; time spent waiting on the client's upload is
kept off the upstream's clock.  Connect errors, timeouts, broken responses and 502/503/504 count against
the upstream's breaker; a failure caused by the client's body never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from time import monotonic_ns
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

from gateway import errors
from gateway.call_limits import CallLimits, LimitClock
from gateway.call_state import Call, ClientGone
from gateway.circuit import CircuitBreaker
from gateway.config import Partner, Route, Upstream
from gateway.headers import format_traceparent, forward_request_headers, new_span_id
from gateway.response_relay import relay
from gateway.routing import RouteMatch, build_upstream_url
from gateway.scoping import Lookup, parse_source_time_ms, sync_lag

_BREAKER_FAILURE_STATUSES = frozenset({502, 503, 504})
# Headers aiohttp would otherwise add on its own; the client's own values (or none) go through instead.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


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
class RoutePlan:
    """Everything the handler needs about a route, computed once at start-up."""

    route: Route
    upstream: UpstreamPool
    artisan: Lookup | None
    sync_lag: Lookup | None
    buffer_body: bool  # the route looks into the JSON body
    max_body: int


async def forward(
    request: web.BaseRequest,
    c: Call,
    plan: RoutePlan,
    m: RouteMatch,
    path: str,
    raw_query: str,
    partner: Partner,
    body: bytes | None,
    lag_source: Any,
    *,
    clock: LimitClock | None,
    client_idle: float,
    max_skew_ms: float,
) -> web.StreamResponse:
    """Call the upstream with the checked request and relay its answer; the breaker hears the verdict."""
    pool = plan.upstream
    session = pool.session
    if session is None or clock is None:  # listener still up while the pools close
        raise errors.UpstreamConnectError(f"upstream {pool.name} is shutting down")
    pool.breaker.before_call()
    healthy: bool | None = None  # the call's verdict on the upstream; None: no verdict
    t = pool.config.timeouts
    limits = clock.limits(t.total, t.read, client_idle)
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
            await send_continue(request, c)
            data = stream_body(request.content, plan.max_body, c, limits)
            owed = False  # not before the streamed body is all out

        up_t0 = monotonic_ns()
        c.upstream_start_ns = c.start_ns + (up_t0 - c.t0)
        try:
            limits.begin_wait(owed=owed)
            up = await session.request(request.method, url, headers=fwd, data=data, allow_redirects=False)
        except (TimeoutError, ClientError, OSError) as exc:
            c.upstream_duration_ns = monotonic_ns() - up_t0
            if c.body_error is not None:
                raise body_failure(c) from None
            healthy = False
            raise upstream_failure(pool.name, exc) from None
        except asyncio.CancelledError:
            if not limits.timed_out():
                raise
            c.upstream_duration_ns = monotonic_ns() - up_t0
            if limits.client_expired:  # the upload stalled: no verdict on the upstream
                c.force_close = True
                raise errors.ClientTimeout("request body upload stalled") from None
            healthy = False
            raise upstream_failure(pool.name, TimeoutError()) from None
        finally:
            limits.end_wait()
        if c.body_error is not None:  # the upstream answered before the upload failed
            up.close()
            raise body_failure(c)

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
                c.sync_lag_ms, c.sync_lag_invalid = sync_lag(ack_ms, source_ms, max_skew_ms)
        resp, upstream_ok = await relay(request, c, up, status, limits)
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


async def stream_body(content: StreamReader, limit: int, c: Call, limits: CallLimits) -> AsyncIterator[bytes]:
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


def expects_continue(request: web.BaseRequest) -> bool:
    return request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue"


async def send_continue(request: web.BaseRequest, c: Call) -> None:
    """Answer ``Expect: 100-continue`` now that the body is wanted; other expectations are ignored."""
    if expects_continue(request):
        c.continued = True
        try:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except ConnectionError:
            raise ClientGone() from None
        request.writer.output_size = 0  # the interim response is not the response


def body_failure(c: Call) -> BaseException:
    """What to tell the client when reading its body failed during the upload."""
    exc = c.body_error
    if isinstance(exc, errors.GatewayError):
        return exc
    if isinstance(exc, ConnectionError | asyncio.CancelledError):
        return ClientGone()
    c.force_close = True
    return errors.BadRequest("malformed request body")


def upstream_failure(name: str, exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return errors.UpstreamTimeout(f"upstream {name} did not answer in time")
    if isinstance(exc, ClientConnectorError):
        return errors.UpstreamConnectError(f"cannot connect to upstream {name}")
    return errors.UpstreamBadResponse(f"upstream {name} closed the connection or sent an invalid response")
