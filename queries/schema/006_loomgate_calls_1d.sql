-- 006 loomgate_calls_1d: per-day call rollup keyed by UTC day x partner x artisan x route x upstream.
--
-- Answers: the same counters and distributions as loomgate_calls_1m, one row per key and UTC day, so
-- reports over weeks or months (the KPI and health-vs-retention queries) merge a few thousand latency
-- states per day instead of one per active key and minute (at 2,000 artisans the per-minute rollup holds
-- about one row per call; this one about one per key and day).  Columns and reading rules are those of
-- loomgate_calls_1m (sum the counters, merge the TDigest states; never average per-day values).
--
-- Fed by a materialized view over loomgate_calls_1m (a view on the view's target: every block the
-- per-minute view writes is re-aggregated per day), so the two rollups hold the same calls by construction
-- and the per-day one costs the writer no second pass over span attributes.  Counters are exact sums of
-- the per-minute ones; quantiles merge the per-minute TDigest states (TDigest error, ~1 % typical).
--
-- Mixed windows: a query over [start, end) reads whole UTC days here and the partial days at either edge
-- from loomgate_calls_1m, e.g. with D1 = first midnight >= start, D2 = last midnight <= end (minute-rounded):
--   day >= D1 AND day < D2                                      -- this table
--   minute >= start AND minute < end AND (minute < D1 OR minute >= D2)   -- loomgate_calls_1m
-- which covers every minute of the window exactly once (D1 >= D2: no whole day, all from loomgate_calls_1m).
--
-- Existing data: `loomgate migrate` creates the table empty and then runs the INSERT … SELECT at the end of
-- this file once (when it applies the file): it aggregates everything already in loomgate_calls_1m, and
-- inserts nothing when the table already holds rows, so running it again (a second process applying the
-- file, or a migration whose ledger write failed) does not count twice.  Run migrate before writers start
-- (the gateway's writer migrates before it accepts records, and an embedded store is open in one process
-- only); on a shared server, calls written by another gateway between the view's creation and the backfill
-- would be counted twice here.  A backfill stopped part-way leaves the table partial and the guard then
-- skips it: with the writers stopped, TRUNCATE TABLE loomgate_calls_1d and run that INSERT by hand (the
-- same applies to rebuilding the table for any other reason).
--
-- Replays: the view's block inherits the insert's deduplication token (the writer sets
-- deduplicate_blocks_in_dependent_materialized_views = 1) and the table keeps the dedup window.
-- Layout: sort key (day, partner, artisan, route, upstream); a window prunes by day, a partner filter by the
-- second key column, an artisan filter through the bloom filter.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:...}}, {{ROLLUP_TTL:...}}, {{DEDUP_WINDOW}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_calls_1d {{ON_CLUSTER}}
(
    day Date CODEC(Delta(2), ZSTD(1)),
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
    INDEX idx_artisan artisan TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = {{ENGINE:AggregatingMergeTree}}
PARTITION BY toYYYYMM(day)
ORDER BY (day, partner, artisan, route, upstream)
{{ROLLUP_TTL:day}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, {{DEDUP_WINDOW}};

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
    quantileTDigestMergeState(latency_ms) AS latency_ms,
    sum(sync_lag_measured) AS sync_lag_measured,
    sum(sync_lag_invalid) AS sync_lag_invalid,
    sum(sync_lag_sum_ms) AS sync_lag_sum_ms,
    quantileTDigestMergeState(sync_lag_ms) AS sync_lag_ms,
    sum(bytes_in) AS bytes_in,
    sum(bytes_out) AS bytes_out
FROM {{DB}}.loomgate_calls_1m
GROUP BY day, partner, artisan, route, upstream;

-- Backfill (see the header): runs once, when this file is applied; a no-op when the table has rows.
INSERT INTO {{DB}}.loomgate_calls_1d
SELECT
    toDate(minute, 'UTC') AS day,
    partner, artisan, route, upstream,
    sum(calls), sum(errors), sum(errors_4xx), sum(errors_5xx), sum(errors_gateway), sum(errors_upstream),
    sum(aborted), sum(latency_sum_ms), max(latency_max_ms), quantileTDigestMergeState(latency_ms),
    sum(sync_lag_measured), sum(sync_lag_invalid), sum(sync_lag_sum_ms), quantileTDigestMergeState(sync_lag_ms),
    sum(bytes_in), sum(bytes_out)
FROM {{DB}}.loomgate_calls_1m
WHERE (SELECT count() FROM {{DB}}.loomgate_calls_1d) = 0
GROUP BY day, partner, artisan, route, upstream;
