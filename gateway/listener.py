"""The listeners' connection handling: every connection ends, every refusal is the gateway's JSON error.

- **Header timeout**: from connect (or the first byte of a kept-alive connection's next request) to a
  complete request head; a client that started a request gets 408, an idle one is simply closed.
- **Body idle timeout**: while the application waits for request body bytes that do not come, the body
  read fails with ``errors.ClientTimeout`` (408 ``client_timeout``, source ``client``: the proxy records
  it) and the connection closes after the answer.  Time the gateway itself is not reading (the upstream
  is slow to take the body) never counts.  This limit owns every wait for request body bytes, read whole
  or streamed to the upstream; ``limits.client_idle_timeout`` owns only the response (a partner that
  stops reading it), so each case has exactly one limit and one answer.
- **Keep-alive timeout**: aiohttp's own ``keepalive_timeout``.
- **Connection cap**: a listener holding ``cap`` connections answers new ones with 503 and closes them at
  once, so a flood costs one short-lived descriptor per connection and never an ``accept()`` failure.
- Requests aiohttp cannot parse get the JSON error body too (400 when malformed; 431 when the request line
  or a header is over ``limits.max_line_size`` / ``max_field_size`` or there are more than
  ``max_headers`` headers), the connection is closed, and on the partner listener they get a call record.

Repeated events (timeouts, refusals over the cap, unexpected errors) are logged through one
``RepeatLimiter``: a line per kind and interval with a count.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import monotonic_ns
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from gateway import errors
from gateway.config import Limits
from gateway.errors import error_body
from gateway.headers import request_id
from gateway.quietlog import RepeatLimiter

log = logging.getLogger("loomgate.listener")

# (request, status, error code, request id, ns from the request's first byte to the error response)
ProtocolErrorHook = Callable[[web.BaseRequest, int, str, str, int], None]

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """One listener's connection limits (the cap already fitted to the process's descriptor limit)."""

    name: str  # "partner" / "admin", for log lines
    header_timeout: float
    body_idle_timeout: float
    keepalive_timeout: float
    max_connections: int


@dataclass
class ConnectionStats:
    """What the listener refused or closed; read by tests and the stats endpoint."""

    header_timeouts: int = 0
    body_timeouts: int = 0
    over_capacity: int = 0
    limiter: RepeatLimiter = field(default_factory=lambda: RepeatLimiter(log))


def raw_error(status: int, code: str, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 error response, for connections no request object owns."""
    rid = request_id(None)
    body = error_body(code, message, rid, "gateway" if status != 408 else "client")
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _OverCapacity(asyncio.Protocol):
    """Answers a connection over the listener's cap with 503 and closes it, reading nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        body = raw_error(503, "over_capacity", "the gateway is at its connection limit; retry later")
        transport.write(body)
        transport.close()


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with header and body idle timeouts and JSON errors."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._policy = manager.policy
        self._stats = manager.stats
        self._hook = manager.on_protocol_error
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # bytes of a request head arrived, the head is not complete
        self._body: StreamReader | None = None  # the body being waited for, while a request runs
        self._body_seen = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        # A rejected request's duration runs from the first byte received while the connection waited for
        # a request (aiohttp exposes no parser start time; a connection's waiter is new for each request).
        self._parse_waiter: object = None
        self._parse_start_ns = 0

    # ------------------------------------------------------------------------------- header timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.pending.discard(self)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(self._policy.header_timeout, self._on_header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and waiter is not self._parse_waiter:
            self._parse_waiter, self._parse_start_ns = waiter, monotonic_ns()
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a complete request head
            self._head_started = False
            self._cancel_header_timer()
        elif data and not self._request_in_progress and not self._messages:
            self._head_started = True
            if self._header_timer is None:  # the next request on a kept-alive connection
                self._arm_header_timer()
        if self._body is not None:
            self._body_seen = self._loop.time()

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        transport = self.transport
        if transport is None or self._request_in_progress or self._messages or self._force_close:
            return
        self._stats.header_timeouts += 1
        self._stats.limiter.report(
            f"{self._policy.name}:header",
            f"{self._policy.name} listener: closed connections that sent no complete request head within "
            f"{self._policy.header_timeout:g} s",
            level=logging.INFO,
        )
        if self._head_started:
            transport.write(raw_error(408, "client_timeout", "request head not received in time"))
        self.force_close()

    # ---------------------------------------------------------------------------- body idle timeout

    async def _handle_request(
        self,
        request: web.BaseRequest,
        start_time: float | None,
        request_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        self._cancel_header_timer()
        self._head_started = False
        content = request.content
        if request.body_exists and not content.is_eof():
            self._body = content
            self._body_seen = self._loop.time()
            self._body_timer = self._loop.call_later(self._policy.body_idle_timeout, self._check_body)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._body = None
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

    def _check_body(self) -> None:
        self._body_timer = None
        body = self._body
        if body is None or body.is_eof() or body.exception() is not None:
            return
        now = self._loop.time()
        limit = self._policy.body_idle_timeout
        # Only silence while someone waits for the body counts (StreamReader keeps its reader's future
        # in _waiter): a paused read, the upstream being slow to take the body, is not the client's fault.
        if getattr(body, "_waiter", None) is None:
            self._body_seen = now
        elif now - self._body_seen >= limit:
            self._stats.body_timeouts += 1
            self._stats.limiter.report(
                f"{self._policy.name}:body",
                f"{self._policy.name} listener: requests timed out waiting {limit:g} s for body bytes (408)",
                level=logging.INFO,
            )
            self.close()  # the connection ends once the 408 is out
            body.set_exception(errors.ClientTimeout(f"no request body bytes for {limit:g} s"))
            return
        self._body_timer = self._loop.call_at(self._body_seen + limit, self._check_body)

    # ------------------------------------------------------------------------------------ JSON errors

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        detail = repr(exc) if isinstance(exc, BaseException) else ""
        self._stats.limiter.report(f"{self._policy.name}:{args[0] if args else ''}",
                                   f"{self._policy.name} listener: {args[0] if args else 'error'}",
                                   level=logging.ERROR, detail=detail)  # fmt: skip

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; the connection is broken")
        source = "gateway"
        if isinstance(exc, errors.GatewayError):  # e.g. a body timeout in a handler that reads bodies
            status, code, text, source = exc.status, exc.code, exc.message, exc.source
        elif status >= 500:
            self.log_exception("error handling a request", exc_info=exc)
            code, text = "internal_error", "internal gateway error"
        elif isinstance(exc, LineTooLong) or (
            isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower()
        ):
            # The parser's message quotes the start of the offending line (maybe a credential): never
            # echoed, never logged.
            status = 431
            code, text = "header_too_large", "request line or header fields over the size limits"
        else:
            code, text = "bad_request", "malformed HTTP request"
        rid = request_id(None)
        resp = web.Response(
            status=status,
            body=error_body(code, text, rid, source),
            content_type="application/json",
            headers={"X-Request-Id": rid},
        )
        resp.force_close()
        if self._hook is not None and 400 <= status < 500 and not isinstance(exc, errors.GatewayError):
            start = self._parse_start_ns
            self._hook(request, status, code, rid, monotonic_ns() - start if start else 0)
        return resp


class GuardedServer(web.Server):
    """aiohttp's server with a connection cap; its connections are ``GuardedRequestHandler``s."""

    policy: ConnectionPolicy
    stats: ConnectionStats
    on_protocol_error: ProtocolErrorHook | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Handlers made but not yet connected: asyncio accepts a burst of connections, calling this factory
        # for each, before any connection_made runs, so ``_connections`` alone would let a burst past the
        # cap.  Weak: a handler whose transport never came up is simply dropped.
        self.pending: weakref.WeakSet[GuardedRequestHandler] = weakref.WeakSet()

    def __call__(self) -> Any:  # an asyncio protocol factory
        if len(self._connections) + len(self.pending) >= self.policy.max_connections:
            self.stats.over_capacity += 1
            self.stats.limiter.report(
                f"{self.policy.name}:cap",
                f"{self.policy.name} listener: at its cap of {self.policy.max_connections} connections; "
                "new connections get 503",
            )
            return _OverCapacity()
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        self.pending.add(handler)
        return handler


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server is a ``GuardedServer`` with ``policy``."""

    def __init__(
        self,
        app: web.Application,
        policy: ConnectionPolicy,
        limits: Limits,
        *,
        on_protocol_error: ProtocolErrorHook | None = None,
    ) -> None:
        super().__init__(
            app,
            access_log=None,  # no per-request logging: every request is in telemetry instead
            shutdown_timeout=_CANCEL_GRACE,  # after the drain wait: cancel what is left promptly
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
            keepalive_timeout=policy.keepalive_timeout,
            # Reading and discarding what a finished request left unread is bounded like any body read.
            lingering_time=min(10.0, policy.body_idle_timeout),
        )
        self.policy = policy
        self.stats = ConnectionStats()
        self._on_protocol_error = on_protocol_error

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        server = GuardedServer(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        server.policy = self.policy
        server.stats = self.stats
        server.on_protocol_error = self._on_protocol_error
        return server


_CANCEL_GRACE = 0.05
