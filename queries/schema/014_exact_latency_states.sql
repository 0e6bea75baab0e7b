-- 014 exact latency states: rollup quantiles that do not change when ClickHouse merges parts.
--
-- Answers: nothing by itself.  loomgate_calls_1m, loomgate_upstream_1m and loomgate_calls_1d held latency
-- and sync-lag distributions as quantileTDigest states.  A t-digest merge result depends on the order in
-- which centroids are merged, so the same query gave different percentiles before and after a background
-- merge (or OPTIMIZE TABLE … FINAL): medians, p95s and the quartile bounds built on them moved in the 4th
-- decimal between runs.  The new columns hold quantileBFloat16 states instead:
--   latency_hist_ms  AggregateFunction(quantileBFloat16, Float64)  request Duration in ms
--   sync_lag_hist_ms AggregateFunction(quantileBFloat16, Float64)  measured sync lags in ms
-- Such a state is a histogram: a count per bfloat16 value (the 16 high bits of the value as a Float32:
-- sign, 8-bit exponent, 7 stored mantissa bits), so merging adds counts and the result is the same for any
-- merge order and any split into parts.
--
-- Reading them: quantileBFloat16Merge(q)(latency_hist_ms), quantilesBFloat16Merge(0.5, 0.95)(…); the
-- -If/-MergeState combinators work as for any state; an empty state reads NaN (as TDigest did).
-- Estimator and error bound: with the n samples sorted, x₍ₖ₎ the k-th smallest and k = max(1, ⌈q·n⌉), the
-- result is x₍ₖ₎ with its mantissa truncated to 7 bits: x₍ₖ₎·(1 − 2⁻⁷) < result ≤ x₍ₖ₎ (relative error
-- under 0.79 %, always low; a Float32 rounding can add 2⁻²⁴ relative).  No interpolation between samples:
-- it is the lower sample at rank ⌈q·n⌉ (quantileExactInclusive interpolates, so with few samples the two
-- can differ by a gap between neighbouring samples).  Any magnitude keeps this bound (sub-millisecond
-- latencies and hour-long sync lags alike).
--
-- What this file does (apply it with no writer inserting, like 007):
--   1. drops the five views that build these three tables' latency states (own and foreign spans, and the
--      per-day view), adds the two columns to each table and recreates the views writing them;
--   2. fills the new columns for the spans still in otel_traces (one INSERT … SELECT per per-minute table,
--      rows with zero counters, so every counter is unchanged); the per-day rollup follows through its view.
--      It runs only when no row has a non-empty latency_hist_ms yet, so a second run adds nothing.
-- The old TDigest columns latency_ms / sync_lag_ms are kept and no longer written: rows older than the
-- raw spans (rollups outlive otel_traces' TTL) keep their quantiles there only, readable with
-- quantileTDigestMerge; every named query, the Insights page and the Grafana panels read the new columns.
-- loomgate_sla_1m holds no quantile state and is unchanged.
-- Rebuilding loomgate_calls_1d by hand (006's header): 006's backfill INSERT lists no columns and no longer
-- matches the table; run the per-day view's SELECT below as INSERT INTO loomgate_calls_1d (day, partner,
-- …, bytes_out) SELECT … FROM loomgate_calls_1m instead, naming the columns it selects.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}.

DROP VIEW IF EXISTS {{DB}}.loomgate_calls_1m_mv {{ON_CLUSTER}};

DROP VIEW IF EXISTS {{DB}}.loomgate_calls_1m_foreign_mv {{ON_CLUSTER}};

DROP VIEW IF EXISTS {{DB}}.loomgate_upstream_1m_mv {{ON_CLUSTER}};

DROP VIEW IF EXISTS {{DB}}.loomgate_upstream_1m_foreign_mv {{ON_CLUSTER}};

DROP VIEW IF EXISTS {{DB}}.loomgate_calls_1d_mv {{ON_CLUSTER}};

ALTER TABLE {{DB}}.loomgate_calls_1m {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS latency_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER latency_ms,
    ADD COLUMN IF NOT EXISTS sync_lag_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER sync_lag_ms,
    COMMENT COLUMN latency_ms 'TDigest state, written before schema 014 only: read latency_hist_ms',
    COMMENT COLUMN sync_lag_ms 'TDigest state, written before schema 014 only: read sync_lag_hist_ms';

ALTER TABLE {{DB}}.loomgate_upstream_1m {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS latency_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER latency_ms,
    ADD COLUMN IF NOT EXISTS sync_lag_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER sync_lag_ms,
    COMMENT COLUMN latency_ms 'TDigest state, written before schema 014 only: read latency_hist_ms',
    COMMENT COLUMN sync_lag_ms 'TDigest state, written before schema 014 only: read sync_lag_hist_ms';

ALTER TABLE {{DB}}.loomgate_calls_1d {{ON_CLUSTER}}
    ADD COLUMN IF NOT EXISTS latency_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER latency_ms,
    ADD COLUMN IF NOT EXISTS sync_lag_hist_ms AggregateFunction(quantileBFloat16, Float64) AFTER sync_lag_ms,
    COMMENT COLUMN latency_ms 'TDigest state, written before schema 014 only: read latency_hist_ms',
    COMMENT COLUMN sync_lag_ms 'TDigest state, written before schema 014 only: read sync_lag_hist_ms';

-- 003's view, with the bfloat16 histogram states in place of the TDigest ones.
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
    quantileBFloat16State(duration_ms) AS latency_hist_ms,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    sumIf(lag_ms, lag_measured) AS sync_lag_sum_ms,
    quantileBFloat16StateIf(lag_ms, lag_measured) AS sync_lag_hist_ms,
    sum(toUInt64OrZero(SpanAttributes['http.request.body.size'])) AS bytes_in,
    sum(toUInt64OrZero(SpanAttributes['http.response.body.size'])) AS bytes_out
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, partner, artisan, route, upstream;

-- 013's view for spans of other sources, likewise.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_calls_1m_foreign_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_calls_1m
AS
WITH
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'partner') AS partner_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'artisan') AS artisan_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'route') AS route_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'upstream') AS upstream_keys,
    toUInt16OrZero(if(mapContains(SpanAttributes, 'http.response.status_code'),
                      SpanAttributes['http.response.status_code'], SpanAttributes['http.status_code'])) AS status,
    StatusCode = 'Error' AS failed,
    SpanAttributes['loomgate.error_source'] AS error_source,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured,
    toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) AS lag_ms,
    Duration / 1e6 AS duration_ms
SELECT
    toStartOfMinute(Timestamp) AS minute,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), partner_keys), [''])) AS partner,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), artisan_keys), [''])) AS artisan,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), route_keys), [''])) AS route,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), upstream_keys), [''])) AS upstream,
    count() AS calls,
    countIf(status >= 400 OR failed OR error_source != '') AS errors,
    countIf(status >= 400 AND status < 500) AS errors_4xx,
    countIf(status >= 500 OR (failed AND status < 400)) AS errors_5xx,
    countIf(error_source = 'gateway') AS errors_gateway,
    countIf(error_source = 'upstream') AS errors_upstream,
    countIf(status = 0 AND error_source != '') AS aborted,
    sum(duration_ms) AS latency_sum_ms,
    max(duration_ms) AS latency_max_ms,
    quantileBFloat16State(duration_ms) AS latency_hist_ms,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    sumIf(lag_ms, lag_measured) AS sync_lag_sum_ms,
    quantileBFloat16StateIf(lag_ms, lag_measured) AS sync_lag_hist_ms,
    sum(toUInt64OrZero(SpanAttributes['http.request.body.size'])) AS bytes_in,
    sum(toUInt64OrZero(SpanAttributes['http.response.body.size'])) AS bytes_out
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND NOT mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, partner, artisan, route, upstream;

-- 004's view, likewise (the latency_le_ns good-event histogram is unchanged).
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
    quantileBFloat16State(Duration / 1e6) AS latency_hist_ms,
    sumMapState([toUInt64(intDiv(Duration + bucket_step - 1, bucket_step) * bucket_step)], [toUInt64(1)])
        AS latency_le_ns,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    quantileBFloat16StateIf(lag_ms, lag_measured) AS sync_lag_hist_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;

-- 013's per-upstream view for spans of other sources, likewise.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_upstream_1m_foreign_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_upstream_1m
AS
WITH
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'route') AS route_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'upstream') AS upstream_keys,
    toUInt16OrZero(if(mapContains(SpanAttributes, 'http.response.status_code'),
                      SpanAttributes['http.response.status_code'], SpanAttributes['http.status_code'])) AS status,
    StatusCode = 'Error' AS failed,
    SpanAttributes['loomgate.error_source'] AS error_source,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured,
    toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) AS lag_ms,
    intExp10(greatest(toInt32(length(toString(Duration))) - 2, 0)) AS bucket_step
SELECT
    toStartOfMinute(Timestamp) AS minute,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), upstream_keys), [''])) AS upstream,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), route_keys), [''])) AS route,
    count() AS calls,
    countIf(status >= 400 OR failed OR error_source != '') AS errors,
    countIf(status >= 400 AND status < 500) AS errors_4xx,
    countIf(status >= 500 OR (failed AND status < 400)) AS errors_5xx,
    countIf(error_source = 'gateway') AS errors_gateway,
    countIf(error_source = 'upstream') AS errors_upstream,
    countIf(status = 0 AND error_source != '') AS aborted,
    sum(Duration / 1e6) AS latency_sum_ms,
    quantileBFloat16State(Duration / 1e6) AS latency_hist_ms,
    sumMapState([toUInt64(intDiv(Duration + bucket_step - 1, bucket_step) * bucket_step)], [toUInt64(1)])
        AS latency_le_ns,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    quantileBFloat16StateIf(lag_ms, lag_measured) AS sync_lag_hist_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND NOT mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;

-- 006's per-day view: merges the per-minute histogram states (exactly: counts add).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_calls_1d_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_calls_1d
AS
SELECT
    toDate(minute, 'UTC') AS day,
    partner, artisan, route, upstream,
    sum(calls) AS calls,
    sum(errors) AS errors,
    sum(errors_4xx) AS errors_4xx,
    sum(errors_5xx) AS errors_5xx,
    sum(errors_gateway) AS errors_gateway,
    sum(errors_upstream) AS errors_upstream,
    sum(aborted) AS aborted,
    sum(latency_sum_ms) AS latency_sum_ms,
    max(latency_max_ms) AS latency_max_ms,
    quantileBFloat16MergeState(latency_hist_ms) AS latency_hist_ms,
    sum(sync_lag_measured) AS sync_lag_measured,
    sum(sync_lag_invalid) AS sync_lag_invalid,
    sum(sync_lag_sum_ms) AS sync_lag_sum_ms,
    quantileBFloat16MergeState(sync_lag_hist_ms) AS sync_lag_hist_ms,
    sum(bytes_in) AS bytes_in,
    sum(bytes_out) AS bytes_out
FROM {{DB}}.loomgate_calls_1m
GROUP BY day, partner, artisan, route, upstream;

-- Backfill of the per-minute call rollup (the per-day one follows through the view above): the states of
-- the spans still stored, keyed as the two views key them, with every counter left at zero.
INSERT INTO {{DB}}.loomgate_calls_1m (minute, partner, artisan, route, upstream, latency_hist_ms,
                                      sync_lag_hist_ms)
WITH
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'partner') AS partner_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'artisan') AS artisan_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'route') AS route_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'upstream') AS upstream_keys,
    mapContains(SpanAttributes, 'loomgate.request_id') AS own,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured
SELECT
    toStartOfMinute(Timestamp) AS minute,
    if(own, SpanAttributes['partner.id'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), partner_keys), ['']))) AS partner,
    if(own, SpanAttributes['artisan.id'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), artisan_keys), ['']))) AS artisan,
    if(own, SpanAttributes['loomgate.route'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), route_keys), ['']))) AS route,
    if(own, SpanAttributes['loomgate.upstream'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), upstream_keys), ['']))) AS upstream,
    quantileBFloat16State(Duration / 1e6) AS latency_hist_ms,
    quantileBFloat16StateIf(toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']), lag_measured) AS sync_lag_hist_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server'
  AND (SELECT count() FROM (SELECT 1 FROM {{DB}}.loomgate_calls_1m
                            WHERE NOT isNaN(finalizeAggregation(latency_hist_ms)) LIMIT 1)) = 0
GROUP BY minute, partner, artisan, route, upstream;

-- Backfill of the per-upstream rollup, likewise.
INSERT INTO {{DB}}.loomgate_upstream_1m (minute, upstream, route, latency_hist_ms, sync_lag_hist_ms)
WITH
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'route') AS route_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'upstream') AS upstream_keys,
    mapContains(SpanAttributes, 'loomgate.request_id') AS own,
    mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS lag_measured
SELECT
    toStartOfMinute(Timestamp) AS minute,
    if(own, SpanAttributes['loomgate.upstream'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), upstream_keys), ['']))) AS upstream,
    if(own, SpanAttributes['loomgate.route'],
       arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                             ResourceAttributes[k]), route_keys), ['']))) AS route,
    quantileBFloat16State(Duration / 1e6) AS latency_hist_ms,
    quantileBFloat16StateIf(toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']), lag_measured) AS sync_lag_hist_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server'
  AND (SELECT count() FROM (SELECT 1 FROM {{DB}}.loomgate_upstream_1m
                            WHERE NOT isNaN(finalizeAggregation(latency_hist_ms)) LIMIT 1)) = 0
GROUP BY minute, upstream, route;
