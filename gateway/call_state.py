"""What one request has gathered so far, on its way to becoming its ``CallRecord``."""

from __future__ import annotations

from aiohttp import web

from collectors.record import CallRecord, valid_text
from gateway import errors


class ClientGone(Exception):
    """The client connection broke while the gateway was reading from or writing to it."""


class Call:
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
        """The finished record.  Request text that can hold any bytes (path, artisan id, Host, User-Agent)
        goes through ``valid_text`` here, the one place; the rest is ASCII already (the parser's method
        token, the checked request id, the peer address) or ours (config names, hex ids, outcome codes).
        What was forwarded upstream is left as it was."""
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
            valid_text(self.path),
            self.status,
            self.error_type,
            self.error_source,
            self.partner_id,
            valid_text(self.artisan_id),
            self.upstream,
            self.client_span_id,
            self.upstream_start_ns,
            self.upstream_duration_ns,
            self.sync_lag_ms,
            self.sync_lag_invalid,
            valid_text(headers.get("Host", "")),
            request.remote or "",
            valid_text(headers.get("User-Agent", "")),
            self.request_body_size,
            self.response_body_size,
            self.request_id,
            request.scheme,
            self.upstream_status,
        )
