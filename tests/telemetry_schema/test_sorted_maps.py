"""Attribute maps are stored sorted by key, as the Collector's clickhouseexporter writes them.

ClickHouse compares, hashes and groups Map values by their ordered (key, value) pairs, so a Loomgate row and
a Collector row with the same attributes in another order would be different values.  Each test writes a
row the way the exporter does (keys sorted) next to Loomgate's row for the same attributes and checks that
the maps are equal and group together.  Also: a request the HTTP parser rejected (method ``_OTHER``) is a
span named ``HTTP`` in both builders.
"""

from __future__ import annotations

from typing import Any

from collectors.metrics import batch_metric_rows, project
from collectors.record import OTHER_METHOD
from collectors.rows import (
    METRIC_HISTOGRAM_COLUMNS,
    SPAN_COLUMNS,
    insert_calls,
    span_rows,
)
from collectors.store import Store

from .test_rows import OK, REJECTED

# Deliberately not in key order: the order a dict literal or a config file would give.
RESOURCE = {"service.name": "loomgate", "host.name": "gw-1", "deployment.environment.name": "prod"}


def _collector_span(row: tuple[Any, ...], span_id: str) -> tuple[Any, ...]:
    """``row`` (a span_rows row) as the exporter would insert it: maps with their keys sorted."""
    values = dict(zip(SPAN_COLUMNS, row, strict=True))
    values["SpanId"] = span_id
    for col in ("ResourceAttributes", "SpanAttributes"):
        values[col] = dict(sorted(values[col].items()))
    return tuple(values[c] for c in SPAN_COLUMNS)


def test_span_maps_equal_and_group_with_collector_rows(schema_store: Store) -> None:
    rec = OK._replace(span_id="a000000000000001", upstream_span_id="")
    insert_calls(schema_store, [rec], service_name="loomgate", resource=RESOURCE)
    (server,) = span_rows([rec], "loomgate", RESOURCE)
    schema_store.insert("otel_traces", [_collector_span(server, "c000000000000001")], SPAN_COLUMNS)

    same = schema_store.query(
        "SELECT l.SpanAttributes = c.SpanAttributes, l.ResourceAttributes = c.ResourceAttributes "
        "FROM otel_traces AS l, otel_traces AS c "
        "WHERE l.SpanId = 'a000000000000001' AND c.SpanId = 'c000000000000001'")
    assert same.rows == [(True, True)]
    groups = schema_store.query(
        "SELECT count(), uniqExact(SpanAttributes), uniqExact(ResourceAttributes) FROM otel_traces")
    assert groups.rows == [(2, 1, 1)]
    keys = schema_store.query(
        "SELECT mapKeys(SpanAttributes), mapKeys(ResourceAttributes) FROM otel_traces "
        "WHERE SpanId = 'a000000000000001'").rows[0]
    assert list(keys[0]) == sorted(keys[0]) and len(keys[0]) > 5
    assert list(keys[1]) == sorted(RESOURCE)


def test_python_builder_sorts_its_maps() -> None:
    for row in span_rows([OK, REJECTED], "loomgate", RESOURCE):
        values = dict(zip(SPAN_COLUMNS, row, strict=True))
        for col in ("ResourceAttributes", "SpanAttributes"):
            assert list(values[col]) == sorted(values[col]), (col, values["SpanKind"])


def test_metric_maps_equal_and_group_with_collector_rows(schema_store: Store) -> None:
    recs = [OK._replace(span_id=f"{i:016x}") for i in range(3)]
    rows = batch_metric_rows(recs, {}, service_name="loomgate", resource=RESOURCE,
                             start_ns=OK.start_ns, time_ns=OK.start_ns + 10**9).histograms
    assert len(rows) == 1
    collector = dict(rows[0])
    collector["Attributes"] = dict(sorted(rows[0]["Attributes"].items()))
    collector["ResourceAttributes"] = dict(sorted(RESOURCE.items()))
    collector["MetricDescription"] = "from the collector"
    schema_store.insert("otel_metrics_histogram", project([rows[0], collector], METRIC_HISTOGRAM_COLUMNS),
                        METRIC_HISTOGRAM_COLUMNS)
    res = schema_store.query(
        "SELECT count(), uniqExact(Attributes), uniqExact(ResourceAttributes), sum(Count) "
        "FROM otel_metrics_histogram GROUP BY Attributes, ResourceAttributes")
    assert res.rows == [(2, 1, 1, 6)]


def test_rejected_request_span_is_named_http_in_both_builders(schema_store: Store) -> None:
    rec = REJECTED._replace(span_id="d000000000000001", method=OTHER_METHOD, route_template="",
                            route_name="", status=431, error_type="header_too_large",
                            duration_ns=1_500_000)
    insert_calls(schema_store, [rec], service_name="loomgate", resource={})
    stored = schema_store.query(
        "SELECT SpanName, SpanAttributes['http.request.method'], Duration FROM otel_traces "
        "WHERE SpanId = 'd000000000000001'")
    assert stored.rows == [("HTTP", "_OTHER", 1_500_000)]
    (row,) = span_rows([rec], "loomgate", {})
    assert row[SPAN_COLUMNS.index("SpanName")] == "HTTP"
    routed = rec._replace(span_id="d000000000000002", route_template="/v1/x")
    assert span_rows([routed], "loomgate", {})[0][SPAN_COLUMNS.index("SpanName")] == "HTTP /v1/x"
