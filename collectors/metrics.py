"""OpenTelemetry metric data points computed per batch, as rows for the Collector's metric tables.

Aggregation happens in the writer process, once per batch, never on the request path:

- ``http.server.request.duration`` (histogram, seconds, semantic-convention buckets), DELTA temporality:
  one data point per (http.route, http.request.method, http.response.status_code, loomgate.status_class,
  loomgate.upstream, error.type) per batch, with StartTimeUnix..TimeUnix covering the batch.  DELTA makes a
  batch self-contained, so a replayed batch produces exactly the same rows (its dedup token then drops
  them) and a restart needs no carried-over state.  Sum ``Count`` over rows to get request counts.
- ``http.server.active_requests`` and ``loomgate.circuit_breaker.state`` (gauges): the snapshot the gateway
  took when it cut the batch (circuit state 0 closed, 1 half-open, 2 open; attribute ``loomgate.upstream``).
- ``loomgate.telemetry.records`` (sum, CUMULATIVE, monotonic) with ``loomgate.pipeline.outcome`` in
  queued / written / spooled / dropped / replayed / dead_lettered (rejected by the store for their content,
  kept in the dead-letter file): the pipeline's own counters, written as a fresh snapshot
  after each successful insert (never spooled: a later snapshot supersedes a missing one).

Only low-cardinality attributes appear on metrics: partner and artisan ids live in span rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any

from collectors.record import CallRecord
from collectors.rows import (
    METRIC_GAUGE_COLUMNS,
    SCOPE_NAME,
    SCOPE_VERSION,
    TEMPORALITY_CUMULATIVE,
    TEMPORALITY_DELTA,
)

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
CIRCUIT_STATE_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
PIPELINE_OUTCOMES: tuple[str, ...] = ("queued", "written", "spooled", "dropped", "replayed", "dead_lettered")
_EXEMPLAR_COLUMNS = tuple(c for c in METRIC_GAUGE_COLUMNS if c.startswith("Exemplars."))


@dataclass(frozen=True, slots=True)
class MetricRows:
    """Rows as column-name → value dicts; ``project`` turns them into tuples for a table's column list."""

    sums: list[dict[str, Any]]
    gauges: list[dict[str, Any]]
    histograms: list[dict[str, Any]]


def project(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in columns) for r in rows]


def _utc(ns: int) -> datetime:
    # The Collector's metric tables use second-resolution DateTime; an aware datetime fits either type.
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status > 0 else ""


def _base(resource: Mapping[str, str], service_name: str, name: str, description: str, unit: str,
          attrs: dict[str, str], start_ns: int, time_ns: int, scope_version: str) -> dict[str, Any]:
    # Maps sorted by key, as the Collector's exporter writes them (ClickHouse groups maps by ordered pairs).
    row: dict[str, Any] = {
        "ResourceAttributes": dict(sorted(resource.items())), "ResourceSchemaUrl": "",
        "ScopeName": SCOPE_NAME,
        "ScopeVersion": scope_version, "ScopeAttributes": {}, "ScopeDroppedAttrCount": 0,
        "ScopeSchemaUrl": "", "ServiceName": service_name, "MetricName": name,
        "MetricDescription": description, "MetricUnit": unit,
        "Attributes": dict(sorted(attrs.items())),
        "StartTimeUnix": _utc(start_ns), "TimeUnix": _utc(time_ns), "Flags": 0,
    }
    for c in _EXEMPLAR_COLUMNS:
        row[c] = []
    return row


# The attributes of the duration histogram, picked from a record by one C-level call.
_duration_key = itemgetter(*(CallRecord._fields.index(f)
                             for f in ("route_template", "method", "status", "upstream", "error_type")))
_DURATION_NS = CallRecord._fields.index("duration_ns")
_START_NS = CallRecord._fields.index("start_ns")


def _duration_attrs(key: tuple[str, str, int, str, str]) -> dict[str, str]:
    route, method, status, upstream, error_type = key
    attrs = {"http.request.method": method}
    if route:
        attrs["http.route"] = route
    if status > 0:
        attrs["http.response.status_code"] = str(status)
        attrs["loomgate.status_class"] = status_class(status)
    if upstream:
        attrs["loomgate.upstream"] = upstream
    if error_type:
        attrs["error.type"] = error_type
    return attrs


def _buckets(seconds: Iterable[float]) -> list[int]:
    # Explicit buckets are upper-inclusive: bucket i holds (bounds[i-1], bounds[i]].
    counts = Counter(map(partial(bisect_left, DURATION_BUCKETS), seconds))
    return [counts.get(i, 0) for i in range(len(DURATION_BUCKETS) + 1)]


def batch_metric_rows(records: Sequence[CallRecord], gauges: Mapping[str, Any], *, service_name: str,
                      resource: Mapping[str, str], start_ns: int, time_ns: int,
                      scope_version: str = SCOPE_VERSION) -> MetricRows:
    """Histogram data points for the batch's records plus the gauge snapshot that came with it."""
    # Per record only a key lookup and an append run in Python (this is a large share of the writer's own
    # work per row otherwise); counting, summing and bucketing run per key in C.
    groups: dict[tuple[str, str, int, str, str], list[float]] = defaultdict(list)
    for key, ns in zip(map(_duration_key, records), map(itemgetter(_DURATION_NS), records), strict=True):
        groups[key].append(ns / 1e9)
    if records:
        start_ns = min(start_ns, min(map(itemgetter(_START_NS), records)))
    histograms = []
    for key, seconds in groups.items():
        row = _base(resource, service_name, "http.server.request.duration",
                    "Duration of HTTP server requests.", "s", _duration_attrs(key), start_ns, time_ns,
                    scope_version)
        row.update(Count=len(seconds), Sum=sum(seconds), BucketCounts=_buckets(seconds),
                   ExplicitBounds=list(DURATION_BUCKETS), Min=min(seconds), Max=max(seconds),
                   AggregationTemporality=TEMPORALITY_DELTA)
        histograms.append(row)
    return MetricRows(sums=[], gauges=gauge_rows(gauges, service_name=service_name, resource=resource,
                                                 time_ns=time_ns, scope_version=scope_version),
                      histograms=histograms)


def gauge_rows(gauges: Mapping[str, Any], *, service_name: str, resource: Mapping[str, str], time_ns: int,
               scope_version: str = SCOPE_VERSION) -> list[dict[str, Any]]:
    """Rows for a gauge snapshot ``{"active_requests": int, "circuit_states": {upstream: state}}``."""
    rows: list[dict[str, Any]] = []
    active = gauges.get("active_requests")
    if active is not None:
        row = _base(resource, service_name, "http.server.active_requests",
                    "Number of active HTTP server requests.", "{request}", {}, time_ns, time_ns,
                    scope_version)
        row["Value"] = float(active)
        rows.append(row)
    for upstream, state in sorted((gauges.get("circuit_states") or {}).items()):
        value = CIRCUIT_STATE_VALUES.get(str(state))
        if value is None:
            continue
        row = _base(resource, service_name, "loomgate.circuit_breaker.state",
                    "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.", "{state}",
                    {"loomgate.upstream": str(upstream)}, time_ns, time_ns, scope_version)
        row["Value"] = float(value)
        rows.append(row)
    return rows


def pipeline_rows(counters: Mapping[str, int], *, service_name: str, resource: Mapping[str, str],
                  start_ns: int, time_ns: int, scope_version: str = SCOPE_VERSION) -> list[dict[str, Any]]:
    """Cumulative pipeline counters since ``start_ns`` (a restart starts a new cumulative series)."""
    rows = []
    for outcome in PIPELINE_OUTCOMES:
        row = _base(resource, service_name, "loomgate.telemetry.records",
                    "Call records by telemetry pipeline outcome.", "{record}",
                    {"loomgate.pipeline.outcome": outcome}, start_ns, time_ns, scope_version)
        row.update(Value=float(counters.get(outcome, 0)), AggregationTemporality=TEMPORALITY_CUMULATIVE,
                   IsMonotonic=True)
        rows.append(row)
    return rows
