-- 001 otel_traces: span storage compatible with the OpenTelemetry Collector's clickhouseexporter.
--
-- Answers: every span Loomgate records (one SERVER span per request, one CLIENT child span per upstream call).
-- Column names, types, codecs, partitioning, sort key and skip indexes follow the Collector's default traces
-- DDL, so Grafana's ClickHouse plugin, queries written for the Collector, and the Collector itself (as a
-- drop-in writer) all work against these tables.  Timestamp is the span start; Duration is in nanoseconds;
-- attribute values are strings; SpanKind is 'Server' / 'Client' / 'Internal' ...; StatusCode is 'Unset' /
-- 'Ok' / 'Error' (the exporter's string forms).
--
-- Replays without duplicates: batches are inserted with an `insert_deduplication_token` (one token per batch,
-- stable across retries and spool replays).  Plain MergeTree ignores tokens unless the table keeps a window of
-- recent block ids, hence `non_replicated_deduplication_window` (Replicated engines always keep one:
-- `replicated_deduplication_window`).  The trace-id lookup below is fed by a materialized view; writers also
-- set `deduplicate_blocks_in_dependent_materialized_views = 1` so a replayed block is dropped there too.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}, {{TTL:...}}, {{DEDUP_WINDOW}}.

CREATE TABLE IF NOT EXISTS {{DB}}.otel_traces {{ON_CLUSTER}}
(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested
    (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested
    (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String)
        ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String)
        ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
)
ENGINE = {{ENGINE:MergeTree}}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{{TTL:toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

-- TraceId -> [first, last] second of the trace, so a trace lookup reads one small table first and then only
-- the matching days of otel_traces.  min/max are idempotent, so a duplicate block here would be harmless.
CREATE TABLE IF NOT EXISTS {{DB}}.otel_traces_trace_id_ts {{ON_CLUSTER}}
(
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
)
ENGINE = {{ENGINE:AggregatingMergeTree}}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
{{TTL:toDateTime(Start)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.otel_traces_trace_id_ts_mv {{ON_CLUSTER}}
TO {{DB}}.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    toDateTime(min(Timestamp)) AS Start,
    toDateTime(max(Timestamp)) AS End
FROM {{DB}}.otel_traces
WHERE TraceId != ''
GROUP BY TraceId;
