-- Active health-check results: one row per check of an upstream, written in batches by collectors.health.
-- Outcome: ok (every condition passed) | slow (answered and passed every non-latency condition, but failed a
-- [RESPONSE_TIME] condition or exceeded degraded_response_time_ms) | fail (no answer or a condition failed).
-- State is the upstream's state after this result (UP | DEGRADED | DOWN | UNKNOWN); incidents and probe
-- uptime are computed from these rows (queries/incidents.sql, queries/sla_report.sql).
-- Kept like the rollups (at least 400 days unless ttl_days is 0), so the 90-day status bars have data.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:MergeTree}}, {{ROLLUP_TTL:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_health_checks {{ON_CLUSTER}}
(
    Timestamp DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    Upstream LowCardinality(String),
    Url String CODEC(ZSTD(1)),
    Outcome LowCardinality(String),
    StatusCode UInt16,
    ResponseTimeMs Float64,
    Reason String CODEC(ZSTD(1)),
    State LowCardinality(String),
    PreviousState LowCardinality(String),
    IntervalS Float32
)
ENGINE = {{ENGINE:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (Upstream, Timestamp)
{{ROLLUP_TTL:toDateTime(Timestamp)}}
SETTINGS ttl_only_drop_parts = 1;
