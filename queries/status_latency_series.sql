-- name: status_latency_series
-- answers: Latency p50 / p95 and sync-lag p95 over time for one upstream (optionally one route), per bucket of
--   `bucket_s` seconds in [start, end), from the loomgate_upstream_1m rollup. Feeds the status page charts.
-- formula: percentiles merge the per-minute states of each bucket (never averages of percentiles):
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
-- param: start DateTime64(3, 'UTC') = -30d  -- start of the range (inclusive)
-- param: end DateTime64(3, 'UTC') = now  -- end of the range (exclusive)
-- param: bucket_s UInt32 = 3600  -- bucket width in seconds (multiple of 60)
-- param: upstream String  -- upstream name
-- param: route String =  -- route name; empty = every route of the upstream
SELECT
    toStartOfInterval(minute, toIntervalSecond({bucket_s:UInt32})) AS bucket,
    sum(calls) AS requests,
    quantilesBFloat16Merge(0.5, 0.95)(latency_hist_ms) AS q,
    round(q[1], 3) AS p50_ms,
    round(q[2], 3) AS p95_ms,
    sum(sync_lag_measured) AS sync_lag_samples,
    if(sync_lag_samples > 0, round(quantileBFloat16Merge(0.95)(sync_lag_hist_ms), 3), NULL) AS sync_lag_p95_ms
FROM loomgate_upstream_1m
WHERE upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
  AND minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
GROUP BY bucket
ORDER BY bucket
