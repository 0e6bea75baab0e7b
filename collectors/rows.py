"""The one row builder: CallRecords -> rows of the Collector-compatible ``otel_traces`` table.

Used by the live exporter and by the data generator, so both write exactly what the OpenTelemetry
Collector's clickhouseexporter would write for the same spans:

* ``SpanKind`` is ``'Server'`` / ``'Client'`` and ``StatusCode`` is ``'Unset'`` / ``'Error'`` (the exporter's
  string forms of the OTLP enums; the ``SPAN_KIND_*`` / ``STATUS_CODE_*`` forms are not used).
* ``Timestamp`` is the span start as an int of epoch nanoseconds (inserted as-is into DateTime64(9), no
  datetime objects), ``Duration`` is nanoseconds, attribute values are strings, Events/Links are empty.
* Status follows the HTTP semantic conventions: a SERVER span is ``Error`` on 5xx (and when the client
  connection was lost with an error), 4xx stays ``Unset``; a CLIENT span is ``Error`` on 4xx/5xx or when
  no response arrived.

Attributes whose value would be empty are left out (ClickHouse reads a missing key as ``''``).  Attribute
maps are sorted by key, as the Collector's exporter writes them: ClickHouse compares and groups Map values
by their ordered pairs (queries/schema/007_sorted_attribute_maps.sql).  A request whose method is unknown
(``_OTHER``: the HTTP parser rejected it) is named ``HTTP``, as the HTTP semantic conventions name it.

Two builders, one definition.  :func:`insert_calls` is how every writer (the live exporter's writer process
and the data generator) stores calls: it sends the records as flat columns to ``loomgate_calls_ingest`` and
the materialized views of queries/schema/005_loomgate_calls_ingest.sql (as 007 recreates them) build the
span rows inside ClickHouse, which costs a fraction of building and serialising Map columns in Python.
:func:`span_rows` builds the same rows in Python for the OTLP exporter and for tests;
tests/telemetry_schema/test_ingest.py checks that both produce identical rows (values, attribute order,
float formatting) for a mixed set of records.  Batches are inserted with :func:`insert_settings` so a
replayed batch is deduplicated in ``otel_traces`` and in every materialized view fed by it (see
queries/schema/001_otel_traces.sql).

The metric column tuples below are the single definition of the Collector's metric insert columns.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from collectors.record import OTHER_METHOD, CallRecord
from gateway import __version__

if TYPE_CHECKING:
    from collectors.store import Store

TRACES_TABLE = "otel_traces"
INGEST_TABLE = "loomgate_calls_ingest"
METRICS_SUM_TABLE = "otel_metrics_sum"
METRICS_GAUGE_TABLE = "otel_metrics_gauge"
METRICS_HISTOGRAM_TABLE = "otel_metrics_histogram"

SCOPE_NAME = "loomgate.gateway"
SCOPE_VERSION = __version__

KIND_SERVER = "Server"
KIND_CLIENT = "Client"
STATUS_UNSET = "Unset"
STATUS_OK = "Ok"
STATUS_ERROR = "Error"

SPAN_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

_METRIC_HEAD: tuple[str, ...] = (
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeDroppedAttrCount",
    "ScopeSchemaUrl",
    "ServiceName",
    "MetricName",
    "MetricDescription",
    "MetricUnit",
    "Attributes",
    "StartTimeUnix",
    "TimeUnix",
)
_EXEMPLARS: tuple[str, ...] = (
    "Exemplars.FilteredAttributes",
    "Exemplars.TimeUnix",
    "Exemplars.Value",
    "Exemplars.SpanId",
    "Exemplars.TraceId",
)

METRIC_GAUGE_COLUMNS: tuple[str, ...] = (*_METRIC_HEAD, "Value", "Flags", *_EXEMPLARS)
METRIC_SUM_COLUMNS: tuple[str, ...] = (*METRIC_GAUGE_COLUMNS, "AggregationTemporality", "IsMonotonic")
METRIC_HISTOGRAM_COLUMNS: tuple[str, ...] = (
    *_METRIC_HEAD,
    "Count",
    "Sum",
    "BucketCounts",
    "ExplicitBounds",
    *_EXEMPLARS,
    "Flags",
    "Min",
    "Max",
    "AggregationTemporality",
)

# Staging columns of INGEST_TABLE: the batch's constants, then every CallRecord field in order (so a record
# tuple transposes straight into them); ``upstream_address`` (CLIENT server.address) is sent only when known.
INGEST_CONSTANT_COLUMNS: tuple[str, ...] = ("service_name", "resource", "scope_name", "scope_version")
INGEST_COLUMNS: tuple[str, ...] = (*INGEST_CONSTANT_COLUMNS, *CallRecord._fields)
UPSTREAM_ADDRESS_COLUMN = "upstream_address"
_UPSTREAM = CallRecord._fields.index("upstream")
_UPSTREAM_SPAN_ID = CallRecord._fields.index("upstream_span_id")

# Events / Links are always empty: one shared, never-mutated list instead of seven new ones per row.
_NONE: list[Any] = []
_EMPTY_NESTED = (_NONE,) * 7

# OTLP AggregationTemporality enum values, as the Collector stores them.
TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2


def insert_settings(dedup_token: str) -> dict[str, Any]:
    """Settings for one batch insert: a replay with the same token is dropped, in MVs' targets too."""
    return {
        "insert_deduplicate": 1,
        "insert_deduplication_token": dedup_token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        **VIEW_SETTINGS,
    }


# An insert into otel_traces or the staging table feeds several views (span rows, the trace-id table, the
# rollups); by default ClickHouse runs them one after another on the inserting thread.  In parallel they
# take about a tenth less time per insert on two cores (bench/ingest_breakdown.py: all vs views_in_sequence).
VIEW_SETTINGS: dict[str, Any] = {"parallel_view_processing": 1}


def insert_calls(store: Store, records: Sequence[tuple[Any, ...]], *, service_name: str,
                 resource: Mapping[str, str], token: str | None = None,
                 upstream_addresses: Mapping[str, str] | None = None) -> int:
    """Store the span rows of ``records`` (CallRecords or plain tuples in CallRecord field order) in
    ``otel_traces``; returns the number of span rows written (SERVER + CLIENT).

    ClickHouse builds the rows (see the module docstring); arguments mean what they mean for
    :func:`span_rows`.  ``token`` is the batch's deduplication token: the same records inserted again with
    the same token add nothing, to otel_traces or to the rollups; None inserts without one.
    """
    if not records:
        return 0
    n = len(records)
    res = dict(resource)
    res.setdefault("service.name", service_name)  # the view sorts it (mapSort)
    fields = list(zip(*records, strict=True))  # transposed in C: no per-record Python work
    if len(fields) != len(CallRecord._fields):
        raise ValueError(f"records have {len(fields)} fields, CallRecord has {len(CallRecord._fields)}")
    columns: list[Sequence[Any]] = [[service_name] * n, [res] * n, [SCOPE_NAME] * n, [SCOPE_VERSION] * n,
                                    *fields]
    names = list(INGEST_COLUMNS)
    if upstream_addresses:
        columns.append([upstream_addresses.get(u, "") for u in fields[_UPSTREAM]])
        names.append(UPSTREAM_ADDRESS_COLUMN)
    store.insert_columns(INGEST_TABLE, columns, names,
                         insert_settings(token) if token is not None else VIEW_SETTINGS)
    return n + n - fields[_UPSTREAM_SPAN_ID].count("")


def span_rows(
    records: Iterable[CallRecord],
    service_name: str,
    resource: Mapping[str, str],
    *,
    upstream_addresses: Mapping[str, str] | None = None,
) -> list[tuple[Any, ...]]:
    """SERVER span row per record, plus a CLIENT child row when an upstream call was made.

    ``resource`` becomes ResourceAttributes (``service.name`` is added when absent); ``upstream_addresses``
    optionally maps upstream names to the host the CLIENT span reports as ``server.address``.

    The cyclic garbage collector is paused while building: a batch allocates hundreds of thousands of
    acyclic tuples and dicts, and the collections they trigger cost about 5x the building itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(records, service_name, resource, upstream_addresses or {})
    finally:
        if was_enabled:
            gc.enable()


def _build(records: Iterable[CallRecord], service_name: str, resource: Mapping[str, str],
           addrs: Mapping[str, str]) -> list[tuple[Any, ...]]:
    res = dict(resource)
    res.setdefault("service.name", service_name)
    res = dict(sorted(res.items()))
    out: list[tuple[Any, ...]] = []
    append = out.append
    scope, version = SCOPE_NAME, SCOPE_VERSION
    server, unset, error, none = KIND_SERVER, STATUS_UNSET, STATUS_ERROR, _NONE
    for r in records:
        (start_ns, duration_ns, trace_id, span_id, parent_span_id, method, route_template, route_name, path,
         status, error_type, error_source, partner_id, artisan_id, upstream, upstream_span_id,
         _upstream_start_ns, upstream_duration_ns, sync_lag_ms, sync_lag_invalid, server_address,
         client_address, user_agent, request_body_size, response_body_size, request_id, scheme,
         _upstream_status) = r
        attrs = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": scheme,
            "http.request.body.size": str(request_body_size),
            "http.response.body.size": str(response_body_size),
            "loomgate.request_id": request_id,
        }
        name = "HTTP" if method == OTHER_METHOD else method
        if route_template:
            attrs["http.route"] = route_template
            name = name + " " + route_template
        if status:
            attrs["http.response.status_code"] = str(status)
        if error_type:
            attrs["error.type"] = error_type
        elif status >= 500:
            attrs["error.type"] = str(status)
        if server_address:
            attrs["server.address"] = server_address
        if client_address:
            attrs["client.address"] = client_address
        if user_agent:
            attrs["user_agent.original"] = user_agent
        if partner_id:
            attrs["partner.id"] = partner_id
        if artisan_id:
            attrs["artisan.id"] = artisan_id
        if route_name:
            attrs["loomgate.route"] = route_name
        if upstream:
            attrs["loomgate.upstream"] = upstream
        if error_source:
            attrs["loomgate.error_source"] = error_source
        if sync_lag_invalid:
            attrs["loomgate.sync_lag_invalid"] = "true"
        elif sync_lag_ms is not None:
            attrs["loomgate.sync_lag_ms"] = str(float(sync_lag_ms))
        if upstream_span_id:
            attrs["loomgate.upstream_duration_ms"] = str(upstream_duration_ns / 1e6)
        failed = status >= 500 or (status == 0 and bool(error_type))
        append((start_ns, trace_id, span_id, parent_span_id, "", name, server, service_name, res, scope,
                version, dict(sorted(attrs.items())), duration_ns, error if failed else unset,
                error_type if failed else "",
                none, none, none, none, none, none, none))
        if upstream_span_id:
            append(_client_row(r, service_name, res, addrs.get(upstream, "")))
    return out


def _client_row(r: CallRecord, service_name: str, res: dict[str, str], address: str) -> tuple[Any, ...]:
    """The CLIENT child span of the upstream call (less frequent than SERVER rows, so kept apart)."""
    attrs = {"http.request.method": r.method, "loomgate.upstream": r.upstream,
             "loomgate.request_id": r.request_id}
    if r.upstream_status:
        attrs["http.response.status_code"] = str(r.upstream_status)
    if address:
        attrs["server.address"] = address
    if r.route_name:
        attrs["loomgate.route"] = r.route_name
    if r.partner_id:
        attrs["partner.id"] = r.partner_id
    if r.artisan_id:
        attrs["artisan.id"] = r.artisan_id
    upstream_failed = r.error_source == "upstream" and bool(r.error_type)
    if upstream_failed:
        attrs["error.type"] = r.error_type
    elif r.upstream_status >= 400:
        attrs["error.type"] = str(r.upstream_status)
    failed = upstream_failed or r.upstream_status >= 400 or r.upstream_status == 0
    message = r.error_type if upstream_failed else ""
    name = "HTTP" if r.method == OTHER_METHOD else r.method
    return (r.upstream_start_ns, r.trace_id, r.upstream_span_id, r.span_id, "", name, KIND_CLIENT,
            service_name, res, SCOPE_NAME, SCOPE_VERSION, dict(sorted(attrs.items())),
            r.upstream_duration_ns, STATUS_ERROR if failed else STATUS_UNSET, message, *_EMPTY_NESTED)
