-- 012 loomgate_sla_1m: per-minute good/bad request counts per upstream x route, for SLA maths.
--
-- Answers: how many requests each upstream / route served per minute and how many of them were bad for the
-- availability SLI: a 5xx response, or an upstream failure the gateway reported (loomgate.error_source =
-- 'upstream': timeout, connect error, broken or aborted upstream response, open circuit) whatever status
-- reached the client.  loomgate_upstream_1m counts 5xx and upstream errors separately, so their union
-- cannot be derived from it; this table holds exactly that union.  Latency buckets, percentiles and
-- sync lag are read from loomgate_upstream_1m (same source rows and filter).
-- Reading it: availability = 1 - sum(bad) / sum(calls) over the window (sum first, never average ratios).
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}, {{ROLLUP_TTL:...}}, {{DEDUP_WINDOW}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_sla_1m {{ON_CLUSTER}}
(
    minute DateTime CODEC(Delta(4), ZSTD(1)),
    upstream LowCardinality(String),
    route LowCardinality(String),
    calls UInt64,
    bad UInt64
)
ENGINE = {{ENGINE:SummingMergeTree}}
PARTITION BY toYYYYMM(minute)
ORDER BY (upstream, route, minute)
{{ROLLUP_TTL:minute}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_sla_1m_mv {{ON_CLUSTER}}
TO {{DB}}.loomgate_sla_1m
AS
SELECT
    toStartOfMinute(Timestamp) AS minute,
    SpanAttributes['loomgate.upstream'] AS upstream,
    SpanAttributes['loomgate.route'] AS route,
    count() AS calls,
    countIf(toUInt16OrZero(SpanAttributes['http.response.status_code']) >= 500
            OR SpanAttributes['loomgate.error_source'] = 'upstream') AS bad
FROM {{DB}}.otel_traces
WHERE SpanKind = 'Server' AND mapContains(SpanAttributes, 'loomgate.request_id')
GROUP BY minute, upstream, route;
