"""Optional OTLP export of the same spans to an OpenTelemetry Collector (runs in the writer process).

Spans are built in batches from the span rows (``collectors.rows.span_rows``) so names, ids, kinds, status
and attributes are exactly those written to ClickHouse; attribute values that the table stores as strings
are sent with their semantic-convention types (status code and sizes as int, milliseconds as float).

The SDK's BatchSpanProcessor is not used (it drops spans when its queue is full and never retries); the
exporter is called directly with a whole batch.  It retries transient failures itself (HTTP 429/502/503/504,
gRPC UNAVAILABLE, …) with backoff until ``EXPORT_TIMEOUT``; when it still fails, ``export`` raises and the
writer spools the batch like any store failure.  Delivery to OTLP is at least once: a batch whose store
insert succeeded but whose export failed is replayed whole (the store drops the duplicate by its token; a
Collector has no such token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from collectors.record import CallRecord
from collectors.rows import KIND_SERVER, SCOPE_NAME, SCOPE_VERSION, SPAN_COLUMNS, STATUS_ERROR, span_rows
from gateway.config import OtlpConfig

EXPORT_TIMEOUT = 10.0  # seconds per export call, retries included
INT_ATTRIBUTES = frozenset({"http.response.status_code", "http.request.body.size", "http.response.body.size"})
FLOAT_ATTRIBUTES = frozenset({"loomgate.sync_lag_ms", "loomgate.upstream_duration_ms"})
BOOL_ATTRIBUTES = frozenset({"loomgate.sync_lag_invalid"})

_COL = {name: i for i, name in enumerate(SPAN_COLUMNS)}


class OtlpExportError(Exception):
    """The collector did not accept a batch after the exporter's own retries."""


def make_exporter(cfg: OtlpConfig, timeout: float = EXPORT_TIMEOUT) -> SpanExporter:
    headers = dict(cfg.headers)
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = cfg.endpoint
        insecure = not endpoint.startswith("https://")
        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=headers or None, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=traces_url(cfg.endpoint), headers=headers or None, timeout=timeout)


def traces_url(endpoint: str) -> str:
    """``http://host:4318`` → ``http://host:4318/v1/traces``; a URL with a path is used as given."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def typed(attrs: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        try:
            if k in INT_ATTRIBUTES:
                out[k] = int(v)
                continue
            if k in FLOAT_ATTRIBUTES:
                out[k] = float(v)
                continue
        except ValueError:
            pass
        out[k] = (v == "true") if k in BOOL_ATTRIBUTES else v
    return out


def readable_spans(records: Sequence[CallRecord], service_name: str,
                   resource: Mapping[str, str]) -> list[ReadableSpan]:
    """SERVER (+ CLIENT) spans for the records, with the ids, times and attributes of the span rows."""
    res = Resource(dict(resource) | {"service.name": service_name})
    scope = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)
    spans = []
    c = _COL
    for row in span_rows(records, service_name, resource):
        trace_id = int(row[c["TraceId"]], 16)
        ctx = SpanContext(trace_id, int(row[c["SpanId"]], 16), is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
        parent_hex = row[c["ParentSpanId"]]
        parent = (SpanContext(trace_id, int(parent_hex, 16), is_remote=row[c["SpanKind"]] == KIND_SERVER,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED)) if parent_hex else None)
        failed = row[c["StatusCode"]] == STATUS_ERROR
        status = (Status(StatusCode.ERROR, row[c["StatusMessage"]] or None) if failed
                  else Status(StatusCode.UNSET))
        start = int(row[c["Timestamp"]])
        spans.append(ReadableSpan(
            name=row[c["SpanName"]], context=ctx, parent=parent, resource=res,
            attributes=typed(row[c["SpanAttributes"]]),
            kind=SpanKind.SERVER if row[c["SpanKind"]] == KIND_SERVER else SpanKind.CLIENT,
            instrumentation_scope=scope, status=status, start_time=start,
            end_time=start + int(row[c["Duration"]]),
        ))
    return spans


class OtlpSpanWriter:
    """Exports whole batches; raises ``OtlpExportError`` so the writer can spool and replay them."""

    def __init__(self, cfg: OtlpConfig, service_name: str, resource: Mapping[str, str],
                 exporter: SpanExporter | None = None) -> None:
        self.cfg = cfg
        self.service_name = service_name
        self.resource = dict(resource)
        self.exporter = exporter or make_exporter(cfg)

    def export(self, records: Sequence[CallRecord]) -> None:
        if not records:
            return
        result = self.exporter.export(readable_spans(records, self.service_name, self.resource))
        if result is not SpanExportResult.SUCCESS:
            raise OtlpExportError(f"OTLP export to {self.cfg.endpoint} ({self.cfg.protocol}) failed")

    def shutdown(self) -> None:
        self.exporter.shutdown()
