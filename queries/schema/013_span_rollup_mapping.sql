-- 013 span rollup mapping: spans from any OpenTelemetry source roll up like Loomgate's own.
--
-- Answers: nothing by itself.  Views 003/004/012 roll up only the SERVER spans that carry
-- loomgate.request_id (the gateway's own spans).  The three views below take every other SERVER span
-- inserted into otel_traces (a Collector writing there, or `loomgate import spans`) into the same rollup
-- tables, so the analytics read one set of rollups whatever wrote the spans.  The two filters are disjoint
-- (`mapContains(..., 'loomgate.request_id')` or its negation): no span is counted twice.
--
-- Which attribute gives each rollup key: `loomgate_span_mapping` holds, per key (partner, artisan, route,
-- upstream), an ordered list of attribute names; the first one present with a non-empty value wins, looked
-- up in SpanAttributes first, then in ResourceAttributes (so 'service.name' names the service).  Defaults:
--   partner  : partner.id
--   artisan  : artisan.id
--   route    : loomgate.route, http.route
--   upstream : loomgate.upstream, service.name
-- A key with no match rolls up under ''.  The latest row per key wins (ReplacingMergeTree on `updated`,
-- read with argMax); views read the table at every insert, so a change applies to spans inserted after it.
-- `loomgate migrate --span-attr KEY=attr1,attr2` (or `loomgate import spans --span-attr ...`) writes it.
--
-- Outcome of a foreign span: status = http.response.status_code, else the older http.status_code;
-- errors = status >= 400 or StatusCode 'Error'; errors_5xx / SLA bad = status >= 500 or StatusCode 'Error';
-- errors_gateway / errors_upstream stay 0 (no source attribution without loomgate.error_source);
-- sync lag, body sizes and loomgate.error_source are read as for Loomgate's spans when present.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_span_mapping {{ON_CLUSTER}}
(
    key LowCardinality(String),
    attributes Array(String),
    updated DateTime64(6) DEFAULT now64(6)
)
ENGINE = {{ENGINE:ReplacingMergeTree(updated)}}
ORDER BY key;

INSERT INTO {{DB}}.loomgate_span_mapping (key, attributes, updated)
SELECT key, attributes, toDateTime64('2000-01-01 00:00:00', 6) AS updated
FROM values('key String, attributes Array(String)',
            ('partner', ['partner.id']),
            ('artisan', ['artisan.id']),
            ('route', ['loomgate.route', 'http.route']),
            ('upstream', ['loomgate.upstream', 'service.name']))
WHERE (SELECT count() FROM {{DB}}.loomgate_span_mapping) = 0;

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
    quantileTDigestState(duration_ms) AS latency_ms,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    sumIf(lag_ms, lag_measured) AS sync_lag_sum_ms,
    quantileTDigestStateIf(lag_ms, lag_measured) AS sync_lag_ms,
    sum(toUInt64OrZero(SpanAttributes['http.request.body.size'])) AS bytes_in,
    sum(toUInt64OrZero(SpanAttributes['http.response.body.size'])) AS bytes_out
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND NOT mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, partner, artisan, route, upstream;

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
    quantileTDigestState(Duration / 1e6) AS latency_ms,
    sumMapState([toUInt64(intDiv(Duration + bucket_step - 1, bucket_step) * bucket_step)], [toUInt64(1)])
        AS latency_le_ns,
    countIf(lag_measured) AS sync_lag_measured,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS sync_lag_invalid,
    quantileTDigestStateIf(lag_ms, lag_measured) AS sync_lag_ms
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND NOT mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_sla_1m_foreign_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_sla_1m
AS
WITH
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'route') AS route_keys,
    (SELECT argMax(attributes, updated) FROM {{DB}}.loomgate_span_mapping WHERE key = 'upstream') AS upstream_keys,
    toUInt16OrZero(if(mapContains(SpanAttributes, 'http.response.status_code'),
                      SpanAttributes['http.response.status_code'], SpanAttributes['http.status_code'])) AS status
SELECT
    toStartOfMinute(Timestamp) AS minute,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), upstream_keys), [''])) AS upstream,
    arrayFirst(v -> v != '', arrayConcat(arrayMap(k -> if(SpanAttributes[k] != '', SpanAttributes[k],
                                                          ResourceAttributes[k]), route_keys), [''])) AS route,
    count() AS calls,
    countIf(status >= 500 OR StatusCode = 'Error' OR SpanAttributes['loomgate.error_source'] = 'upstream') AS bad
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND NOT mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;
