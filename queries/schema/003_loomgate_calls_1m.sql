-- 003 loomgate_calls_1m: per-minute call rollup keyed by minute x partner x artisan x route x upstream.
--
-- Answers: calls, errors (by class 4xx/5xx and by source gateway/upstream), latency and sync-lag
-- distributions and bytes per partner / artisan / route / upstream, so 30-day reports read this table
-- (one row per active key and minute) instead of raw spans.  Fed by a materialized view over the SERVER
-- spans Loomgate writes into otel_traces (SpanKind = 'Server', carrying loomgate.request_id), so rows from
-- our exporter and from an OpenTelemetry Collector relaying the gateway's OTLP spans roll up the same way.
--
-- Reading it (merge the states, never average per-minute values):
--   calls = sum(calls); error ratio = sum(errors_5xx) / sum(calls)
--   mean latency = sum(latency_sum_ms) / sum(calls)
--   p95 latency  = quantileTDigestMerge(0.95)(latency_ms)      (TDigest: ~1 % relative error typical)
--   several      = quantilesTDigestMerge(0.5, 0.95, 0.99)(latency_ms)
--   sync lag p95 = quantileTDigestMerge(0.95)(sync_lag_ms) over sync_lag_measured samples;
--   sync_lag_invalid counts source timestamps too far in the future (never a negative lag).
-- Status: http.response.status_code; 0 (client went away) counts in `aborted`.
--
-- Layout: sort key (hour, partner, artisan, route, upstream, minute) holds the same key set as
-- (minute, partner, artisan, route, upstream) but clusters a partner's rows within each hour, so a
-- partner filter prunes granules through the primary index; a bloom filter serves artisan lookups.
-- Replays: the view's block inherits the insert's deduplication token when the writer sets
-- deduplicate_blocks_in_dependent_materialized_views = 1; the target keeps the dedup window too.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}, {{ROLLUP_TTL:...}}, {{DEDUP_WINDOW}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_calls_1m {{ON_CLUSTER}}
(
    minute DateTime CODEC(Delta(4), ZSTD(1)),
    partner LowCardinality(String),
    artisan String,
    route LowCardinality(String),
    upstream LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    errors_4xx SimpleAggregateFunction(sum, UInt64),
    errors_5xx SimpleAggregateFunction(sum, UInt64),
    errors_gateway SimpleAggregateFunction(sum, UInt64),
    errors_upstream SimpleAggregateFunction(sum, UInt64),
    aborted SimpleAggregateFunction(sum, UInt64),
    latency_sum_ms SimpleAggregateFunction(sum, Float64),
    latency_max_ms SimpleAggregateFunction(max, Float64),
    latency_ms AggregateFunction(quantileTDigest, Float64),
    sync_lag_measured SimpleAggregateFunction(sum, UInt64),
    sync_lag_invalid SimpleAggregateFunction(sum, UInt64),
    sync_lag_sum_ms SimpleAggregateFunction(sum, Float64),
    sync_lag_ms AggregateFunction(quantileTDigest, Float64),
    bytes_in SimpleAggregateFunction(sum, UInt64),
    bytes_out SimpleAggregateFunction(sum, UInt64),
    INDEX idx_artisan artisan TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_upstream upstream TYPE set(256) GRANULARITY 4
)
ENGINE = {{ENGINE:AggregatingMergeTree}}
PARTITION BY toYYYYMM(minute)
ORDER BY (toStartOfHour(minute), partner, artisan, route, upstream, minute)
{{ROLLUP_TTL:minute}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_calls_1m_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_calls_1m
AS
WITH
    toUInt16OrZero(SpanAttributes['http.response.status_code']) AS status,
    SpanAttributes['loomgate.error_source'] AS error_source,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured,
    toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) AS lag_ms,
    Duration / 1e6 AS duration_ms
SELECT
    toStartOfMinute(Timestamp) AS minute,
    SpanAttributes['partner.id'] AS partner,
    SpanAttributes['artisan.id'] AS artisan,
    SpanAttributes['loomgate.route'] AS route,
    SpanAttributes['loomgate.upstream'] AS upstream,
    count() AS calls,
    countIf(error_source != '') AS errors,
    countIf(status >= 400 AND status < 500) AS errors_4xx,
    countIf(status >= 500) AS errors_5xx,
    countIf(error_source = 'gateway') AS errors_gateway,
    countIf(error_source = 'upstream') AS errors_upstream,
    countIf(status = 0) AS aborted,
    sum(duration_ms) AS latency_sum_ms,
    max(duration_ms) AS latency_max_ms,
    quantileTDigestState(duration_ms) AS latency_ms,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    sumIf(lag_ms, lag_measured) AS sync_lag_sum_ms,
    quantileTDigestStateIf(lag_ms, lag_measured) AS sync_lag_ms,
    sum(toUInt64OrZero(SpanAttributes['http.request.body.size'])) AS bytes_in,
    sum(toUInt64OrZero(SpanAttributes['http.response.body.size'])) AS bytes_out
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, partner, artisan, route, upstream;
