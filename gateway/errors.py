"""Gateway errors: one small hierarchy, mapped to JSON HTTP responses in one place (``error_response``).

Every error names its ``source``: ``gateway`` when Loomgate refused or failed the request itself,
``upstream`` when the upstream failed (connect, timeout, broken response, open circuit), ``client`` when
the partner's own connection was too slow: it did not send its request in time, or stopped
uploading or reading mid-call (never held against the upstream's availability).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    source = "gateway"
    error_type = "internal"  # value of the error.type span attribute

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(GatewayError):
    status, code, error_type = 400, "bad_request", "bad_request"


class BadPath(BadRequest):
    code, error_type = "bad_path", "bad_path"


class InvalidHeaderEncoding(BadRequest):
    """A header value held bytes that are not UTF-8: the upstream could not be sent what was checked."""

    code, error_type = "invalid_header_encoding", "invalid_header_encoding"


class InvalidQueryEncoding(BadRequest):
    """A query value the gateway decides on is not UTF-8 once percent-decoded."""

    code, error_type = "invalid_query_encoding", "invalid_query_encoding"


class ArtisanMissing(BadRequest):
    code, error_type = "artisan_id_missing", "artisan_id_missing"


class Ambiguous(BadRequest):
    """A value the gateway decides on was sent more than once (or padded): which one counts is unclear."""

    code, error_type = "ambiguous_request", "ambiguous_request"


class AmbiguousArtisan(Ambiguous):
    code, error_type = "ambiguous_artisan", "ambiguous_artisan"


class AmbiguousCredentials(Ambiguous):
    code, error_type = "ambiguous_credentials", "ambiguous_credentials"


class AmbiguousSyncLag(Ambiguous):
    code, error_type = "ambiguous_sync_lag", "ambiguous_sync_lag"


class Unauthorized(GatewayError):
    status, code, error_type = 401, "unauthorized", "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="loomgate"'})


class Forbidden(GatewayError):
    status, code, error_type = 403, "forbidden", "forbidden"


class NotFound(GatewayError):
    status, code, error_type = 404, "route_not_found", "route_not_found"


class MethodNotAllowed(GatewayError):
    status, code, error_type = 405, "method_not_allowed", "method_not_allowed"

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message, headers={"Allow": ", ".join(allow)})
        self.allow = allow


class PayloadTooLarge(GatewayError):
    status, code, error_type = 413, "payload_too_large", "payload_too_large"


class UnsupportedEncoding(GatewayError):
    status, code, error_type = 415, "unsupported_content_encoding", "unsupported_content_encoding"


class UnsupportedMediaType(GatewayError):
    status, code, error_type = 415, "unsupported_media_type", "unsupported_media_type"


class RateLimited(GatewayError):
    status, code, error_type = 429, "rate_limited", "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
        self.retry_after = retry_after


class AuthThrottled(GatewayError):
    status, code, error_type = 429, "auth_throttled", "auth_throttled"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
        self.retry_after = retry_after


class UpstreamError(GatewayError):
    source = "upstream"


class UpstreamConnectError(UpstreamError):
    status, code, error_type = 502, "upstream_connect_error", "connect_error"


class UpstreamBadResponse(UpstreamError):
    status, code, error_type = 502, "upstream_bad_response", "bad_response"


class UpstreamTimeout(UpstreamError):
    status, code, error_type = 504, "upstream_timeout", "timeout"


class CircuitOpen(UpstreamError):
    status, code, error_type = 503, "circuit_open", "circuit_open"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
        self.retry_after = retry_after


class ClientTimeout(GatewayError):
    """The partner was too slow: no complete request head in time, no request body bytes for
    ``limits.body_idle_timeout``, or not reading the response for ``limits.client_idle_timeout``.
    One code for all of them: ``client_timeout``, source ``client``."""

    status, code, error_type = 408, "client_timeout", "client_timeout"
    source = "client"


def error_body(
    code: str, message: str, request_id: str, source: str, details: Mapping[str, Any] | None = None
) -> bytes:
    """``details`` adds machine-readable fields (a parameter's name, a line and column) after the four."""
    error = {"code": code, "message": message, "request_id": request_id, "source": source}
    if details:
        error.update({k: v for k, v in details.items() if k not in error})
    return json.dumps({"error": error}).encode()


def error_response(
    exc: GatewayError, request_id: str, details: Mapping[str, Any] | None = None
) -> web.Response:
    """The one place gateway errors become HTTP responses."""
    headers = {**exc.headers, "X-Request-Id": request_id}
    return web.Response(
        status=exc.status,
        body=error_body(exc.code, exc.message, request_id, exc.source, details),
        content_type="application/json",
        headers=headers,
    )
