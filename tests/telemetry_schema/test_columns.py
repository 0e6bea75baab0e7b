"""otel_* tables carry exactly the Collector's clickhouseexporter columns and types; our insert column lists
name only real, insertable columns."""

from __future__ import annotations

from collectors.rows import (
    METRIC_GAUGE_COLUMNS,
    METRIC_HISTOGRAM_COLUMNS,
    METRIC_SUM_COLUMNS,
    SPAN_COLUMNS,
)
from collectors.store import Store

M = "Map(LowCardinality(String), String)"
LC = "LowCardinality(String)"

# The Collector's default traces DDL (exporter/clickhouseexporter/internal/sqltemplates/traces_table.sql).
EXPECTED_TRACES = [
    ("Timestamp", "DateTime64(9)"), ("TraceId", "String"), ("SpanId", "String"), ("ParentSpanId", "String"),
    ("TraceState", "String"), ("SpanName", LC), ("SpanKind", LC), ("ServiceName", LC),
    ("ResourceAttributes", M), ("ScopeName", "String"), ("ScopeVersion", "String"), ("SpanAttributes", M),
    ("Duration", "UInt64"), ("StatusCode", LC), ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"), ("Events.Name", f"Array({LC})"),
    ("Events.Attributes", f"Array({M})"), ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"), ("Links.Attributes", f"Array({M})"),
    ("ResourceAttributeItems", "Array(String)"), ("SpanAttributeItems", "Array(String)"),
]

_METRIC_HEAD = [
    ("ResourceAttributes", M), ("ResourceSchemaUrl", "String"), ("ScopeName", "String"),
    ("ScopeVersion", "String"), ("ScopeAttributes", M), ("ScopeDroppedAttrCount", "UInt32"),
    ("ScopeSchemaUrl", "String"), ("ServiceName", LC), ("MetricName", LC), ("MetricDescription", "String"),
    ("MetricUnit", "String"), ("Attributes", M), ("StartTimeUnix", "DateTime"), ("TimeUnix", "DateTime"),
]
_EXEMPLARS = [
    ("Exemplars.FilteredAttributes", f"Array({M})"), ("Exemplars.TimeUnix", "Array(DateTime)"),
    ("Exemplars.Value", "Array(Float64)"), ("Exemplars.SpanId", "Array(String)"),
    ("Exemplars.TraceId", "Array(String)"),
]
EXPECTED_METRICS = {
    "otel_metrics_gauge": [*_METRIC_HEAD, ("Value", "Float64"), ("Flags", "UInt32"), *_EXEMPLARS],
    "otel_metrics_sum": [*_METRIC_HEAD, ("Value", "Float64"), ("Flags", "UInt32"), *_EXEMPLARS,
                         ("AggregationTemporality", "Int32"), ("IsMonotonic", "Bool")],
    "otel_metrics_histogram": [*_METRIC_HEAD, ("Count", "UInt64"), ("Sum", "Float64"),
                               ("BucketCounts", "Array(UInt64)"), ("ExplicitBounds", "Array(Float64)"),
                               *_EXEMPLARS, ("Flags", "UInt32"), ("Min", "Float64"), ("Max", "Float64"),
                               ("AggregationTemporality", "Int32")],
    "otel_metrics_exponential_histogram": [
        *_METRIC_HEAD, ("Count", "UInt64"), ("Sum", "Float64"), ("Scale", "Int32"), ("ZeroCount", "UInt64"),
        ("PositiveOffset", "Int32"), ("PositiveBucketCounts", "Array(UInt64)"), ("NegativeOffset", "Int32"),
        ("NegativeBucketCounts", "Array(UInt64)"), *_EXEMPLARS, ("Flags", "UInt32"), ("Min", "Float64"),
        ("Max", "Float64"), ("AggregationTemporality", "Int32")],
    "otel_metrics_summary": [*_METRIC_HEAD, ("Count", "UInt64"), ("Sum", "Float64"),
                             ("ValueAtQuantiles.Quantile", "Array(Float64)"),
                             ("ValueAtQuantiles.Value", "Array(Float64)"), ("Flags", "UInt32")],
}


def _columns(store: Store, table: str) -> list[tuple[str, str]]:
    res = store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY position", {"db": store.database, "t": table})
    return [(n, t) for n, t in res.rows]


def _insertable(store: Store, table: str) -> list[str]:
    res = store.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "AND default_kind NOT IN ('ALIAS', 'MATERIALIZED') ORDER BY position",
        {"db": store.database, "t": table})
    return [r[0] for r in res.rows]


def test_otel_traces_columns_match_the_collector(schema_store: Store) -> None:
    assert _columns(schema_store, "otel_traces") == EXPECTED_TRACES


def test_trace_id_lookup_columns(schema_store: Store) -> None:
    assert _columns(schema_store, "otel_traces_trace_id_ts") == [
        ("TraceId", "String"), ("Start", "SimpleAggregateFunction(min, DateTime)"),
        ("End", "SimpleAggregateFunction(max, DateTime)"),
    ]


def test_metric_tables_match_the_collector(schema_store: Store) -> None:
    for table, expected in EXPECTED_METRICS.items():
        assert _columns(schema_store, table) == expected, table


def test_insert_column_lists_are_the_tables_insertable_columns(schema_store: Store) -> None:
    assert list(SPAN_COLUMNS) == _insertable(schema_store, "otel_traces")
    assert list(METRIC_GAUGE_COLUMNS) == _insertable(schema_store, "otel_metrics_gauge")
    assert list(METRIC_SUM_COLUMNS) == _insertable(schema_store, "otel_metrics_sum")
    assert list(METRIC_HISTOGRAM_COLUMNS) == _insertable(schema_store, "otel_metrics_histogram")


def test_sort_keys_and_engines(schema_store: Store) -> None:
    res = schema_store.query(
        "SELECT name, engine, partition_key, sorting_key, primary_key FROM system.tables "
        "WHERE database = {db:String}", {"db": schema_store.database})
    t = {r[0]: r[1:] for r in res.rows}
    assert t["otel_traces"] == ("MergeTree", "toDate(Timestamp)",
                                "ServiceName, SpanName, toDateTime(Timestamp), Timestamp",
                                "ServiceName, SpanName, toDateTime(Timestamp)")
    assert t["otel_traces_trace_id_ts"][:3] == ("AggregatingMergeTree", "toStartOfWeek(Start)", "(TraceId)")
    assert t["otel_metrics_sum"][2] == (
        "ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix")
    assert t["loomgate_calls_1m"][0] == "AggregatingMergeTree"
    assert t["loomgate_calls_1m"][2] == "toStartOfHour(minute), partner, artisan, route, upstream, minute"
