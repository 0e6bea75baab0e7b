"""The compact record the proxy hands to telemetry: one per request that reached the gateway.

Built on the request path, so it holds only values already at hand (no formatting, no I/O).  Span rows,
metric aggregates and OTLP spans are all derived from it later, in batches, off the event loop.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

# The text rule: every string in a record is valid Unicode that encodes to UTF-8.  Request bytes that are
# not UTF-8 reach Python as lone surrogates (aiohttp decodes headers and the request line with
# "surrogateescape", one U+DC80..U+DCFF per bad byte), and so do JSON "\ud800"-style escapes; a str
# holds no surrogate pairs, so every surrogate code point in one is invalid.  Each is recorded as U+FFFD.
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: str) -> str:
    """``value`` with every byte that was not UTF-8 (and every lone surrogate escape) as U+FFFD.

    Called on each request-derived string as the record is built: ``isascii`` is a flag read in CPython,
    so the common case costs one call and returns the same object.
    """
    if value.isascii():
        return value
    return _SURROGATE.sub(REPLACEMENT, value)

# ``method`` of a request whose method is not known (the HTTP parser rejected it): the HTTP semantic
# conventions' value for http.request.method; such spans are named ``HTTP``.
OTHER_METHOD = "_OTHER"


class CallRecord(NamedTuple):
    start_ns: int  # wall clock, epoch nanoseconds, when the request arrived
    duration_ns: int  # until the last response byte was written (or the request failed)
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 hex: the gateway's SERVER span
    parent_span_id: str  # 16 hex from the incoming traceparent, "" when the trace starts here
    method: str
    route_template: str  # e.g. /v1/artisans/{artisan_id}/listings; "" when no route matched
    route_name: str  # "" when no route matched
    path: str  # normalised request path (no query string)
    status: int  # status sent to the client; 0 when the client connection was aborted
    error_type: str  # "" on success; else e.g. timeout, connect_error, circuit_open, unauthorized
    error_source: str  # "" on success; "gateway", "upstream" or "client" (the partner's own connection)
    partner_id: str  # "" when unauthenticated
    artisan_id: str  # "" when unknown
    upstream: str  # upstream name, "" when the request never got that far
    upstream_span_id: str  # 16 hex: the CLIENT span, "" when no upstream call was made
    upstream_start_ns: int  # 0 when no upstream call
    upstream_duration_ns: int  # time to upstream response headers (+ body), 0 when none
    sync_lag_ms: float | None  # ack time - source change time, None when not applicable
    sync_lag_invalid: bool  # source time in the future beyond the allowed skew
    server_address: str  # Host the client asked for
    client_address: str
    user_agent: str
    request_body_size: int
    response_body_size: int
    request_id: str
    scheme: str  # http / https
    upstream_status: int  # status the upstream answered, 0 when none


class RecordSink(Protocol):
    """Where the proxy puts finished records.  ``submit`` is called on the event loop and must not block."""

    def submit(self, rec: CallRecord) -> None: ...


class NullSink:
    """Telemetry disabled."""

    def submit(self, rec: CallRecord) -> None:
        return None


class ListSink:
    """Keeps records in memory: for tests of the proxy alone and for tools that inspect traffic."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def submit(self, rec: CallRecord) -> None:
        self.records.append(rec)
