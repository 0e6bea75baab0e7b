-- Alert history written by collectors.alerts: state changes of burn-rate rules (Event firing | resolved)
-- and webhook deliveries (Event delivered | delivery_failed, with Webhook, Attempts and the last error).
-- AlertKey identifies one rule of one SLA: "<sla>/<source>/<long window>/<short window>".
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:MergeTree}}, {{ROLLUP_TTL:...}}.
CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_alerts {{ON_CLUSTER}}
(
    Timestamp DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    AlertKey String,
    Sla LowCardinality(String),
    Upstream LowCardinality(String),
    Route LowCardinality(String),
    Source LowCardinality(String),
    Severity LowCardinality(String),
    LongWindowS UInt32,
    ShortWindowS UInt32,
    Factor Float64,
    Threshold Float64,
    LongRatio Float64,
    ShortRatio Float64,
    Event LowCardinality(String),
    Webhook String,
    Attempts UInt16,
    Message String CODEC(ZSTD(1))
)
ENGINE = {{ENGINE:MergeTree}}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (AlertKey, Timestamp)
{{ROLLUP_TTL:toDateTime(Timestamp)}}
SETTINGS ttl_only_drop_parts = 1;
