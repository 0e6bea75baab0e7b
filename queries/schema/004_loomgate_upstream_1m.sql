-- 004 loomgate_upstream_1m: per-minute rollup per upstream x route, for SLA and status-page queries.
--
-- Answers: availability and latency objectives per upstream or route over 30-day windows without touching
-- raw spans or the (much larger) per-partner/artisan rollup.  Same source and filter as loomgate_calls_1m.
--
-- Latency SLOs need "good events" = requests faster than a threshold chosen later, which a quantile sketch
-- cannot count.  `latency_le_ns` is therefore a sparse histogram: each request's Duration (ns) is rounded UP
-- to two significant digits (e.g. 123,456,789 -> 130,000,000) and counted under that bound with sumMap.
--   good(T) = arraySum(arrayMap((le, n) -> if(le <= T, n, 0), h.1, h.2)) with h = sumMapMerge(latency_le_ns)
-- This is EXACT for any threshold T with at most two significant digits in ns (250 ms, 300 ms, 1.5 s,
-- 2 s ...); for other thresholds it under-counts good events by at most one bucket (< 10 % wide), i.e.
-- it errs on the safe side.  A row holds at most ~90 buckets per decade of latency actually seen.
-- Also: quantileTDigestMerge(q)(latency_ms) for percentiles, and sync-lag states as in loomgate_calls_1m.
-- Availability: total good / total events over the window (sum the counters, never average ratios).
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}, {{ROLLUP_TTL:...}}, {{DEDUP_WINDOW}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_upstream_1m {{ON_CLUSTER}}
(
    minute DateTime CODEC(Delta(4), ZSTD(1)),
    upstream LowCardinality(String),
    route LowCardinality(String),
    calls SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    errors_4xx SimpleAggregateFunction(sum, UInt64),
    errors_5xx SimpleAggregateFunction(sum, UInt64),
    errors_gateway SimpleAggregateFunction(sum, UInt64),
    errors_upstream SimpleAggregateFunction(sum, UInt64),
    aborted SimpleAggregateFunction(sum, UInt64),
    latency_sum_ms SimpleAggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantileTDigest, Float64),
    latency_le_ns AggregateFunction(sumMap, Array(UInt64), Array(UInt64)),
    sync_lag_measured SimpleAggregateFunction(sum, UInt64),
    sync_lag_invalid SimpleAggregateFunction(sum, UInt64),
    sync_lag_ms AggregateFunction(quantileTDigest, Float64)
)
ENGINE = {{ENGINE:AggregatingMergeTree}}
PARTITION BY toYYYYMM(minute)
ORDER BY (upstream, route, minute)
{{ROLLUP_TTL:minute}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_upstream_1m_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_upstream_1m
AS
WITH
    toUInt16OrZero(SpanAttributes['http.response.status_code']) AS status,
    SpanAttributes['loomgate.error_source'] AS error_source,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured,
    toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) AS lag_ms,
    intExp10(greatest(toInt32(length(toString(Duration))) - 2, 0)) AS bucket_step
SELECT
    toStartOfMinute(Timestamp) AS minute,
    SpanAttributes['loomgate.upstream'] AS upstream,
    SpanAttributes['loomgate.route'] AS route,
    count() AS calls,
    countIf(error_source != '') AS errors,
    countIf(status >= 400 AND status < 500) AS errors_4xx,
    countIf(status >= 500) AS errors_5xx,
    countIf(error_source = 'gateway') AS errors_gateway,
    countIf(error_source = 'upstream') AS errors_upstream,
    countIf(status = 0) AS aborted,
    sum(Duration / 1e6) AS latency_sum_ms,
    quantileTDigestState(Duration / 1e6) AS latency_ms,
    sumMapState([toUInt64(intDiv(Duration + bucket_step - 1, bucket_step) * bucket_step)], [toUInt64(1)])
        AS latency_le_ns,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    quantileTDigestStateIf(lag_ms, lag_measured) AS sync_lag_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;
