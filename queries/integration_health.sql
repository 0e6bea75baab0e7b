-- name: integration_health
-- answers: Integration health per partner, artisan, route and upstream over a window: calls, error rate
--   (all, gateway-caused, upstream-caused), p50/p95/p99 latency, sync-lag p95 and the share of the window
--   the upstream was down according to its health checks.
-- formula: error rate = errors ÷ calls (errors = calls with loomgate.error_source set); by source likewise
-- formula: p50/p95/p99 latency (ms) and sync-lag p95 over measured sync lags (s; NULL: none measured)
--   from the merged quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n
--   samples, the result is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits
--   (at most 0.79 % below that sample), the same whatever parts ClickHouse has merged
-- formula: down share = Σ check interval while State = 'DOWN' ÷ Σ check interval (NULL: no health checks)
-- note: whole UTC days of the window come from the per-day rollup loomgate_calls_1d, the partial days at its
--   edges from the per-minute loomgate_calls_1m (each minute read once); edges are rounded to whole minutes.
-- param: start DateTime64(3, 'UTC') = -30d  -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now     -- end of the window (exclusive)
-- param: partner String =                   -- only this partner (empty = all)
-- param: artisan String =                   -- only this artisan (empty = all)
-- param: limit UInt32 = 1000                -- at most this many rows, most errors first
WITH
    down AS (
        SELECT Upstream AS upstream,
               sumIf(IntervalS, State = 'DOWN') / nullIf(sum(IntervalS), 0) AS down_share
        FROM loomgate_health_checks
        WHERE Timestamp >= {start:DateTime64(3, 'UTC')} AND Timestamp < {end:DateTime64(3, 'UTC')}
        GROUP BY Upstream
    ),
    toStartOfMinute({start:DateTime64(3, 'UTC')}) AS m_start,
    -- whole days [d_first, d_last) from the per-day rollup; the minutes outside them from the per-minute one
    toStartOfDay(m_start - toIntervalMillisecond(1)) + toIntervalDay(1) AS d_first,
    toStartOfDay(toStartOfMinute({end:DateTime64(3, 'UTC')} - toIntervalMillisecond(1)) + toIntervalMinute(1))
        AS d_last,
    rows AS (
        SELECT partner, artisan, route, upstream, calls, errors, errors_gateway, errors_upstream,
               latency_hist_ms, sync_lag_measured, sync_lag_hist_ms
        FROM loomgate_calls_1d
        WHERE day >= toDate(d_first) AND day < toDate(d_last)
          AND ({partner:String} = '' OR partner = {partner:String})
          AND ({artisan:String} = '' OR artisan = {artisan:String})
        UNION ALL
        SELECT partner, artisan, route, upstream, calls, errors, errors_gateway, errors_upstream,
               latency_hist_ms, sync_lag_measured, sync_lag_hist_ms
        FROM loomgate_calls_1m
        -- stated on toStartOfHour(minute), the first sort key column, so the index skips the whole days
        WHERE toStartOfHour(minute) >= toStartOfHour(m_start) AND toStartOfHour(minute) < {end:DateTime64(3, 'UTC')}
          AND (toStartOfHour(minute) < d_first OR toStartOfHour(minute) >= d_last)
          AND minute >= m_start AND minute < {end:DateTime64(3, 'UTC')}
          AND ({partner:String} = '' OR partner = {partner:String})
          AND ({artisan:String} = '' OR artisan = {artisan:String})
    ),
    calls AS (
        SELECT partner, artisan, route, upstream,
               sum(calls) AS n_calls,
               sum(errors) AS n_errors,
               sum(errors_gateway) AS n_gateway,
               sum(errors_upstream) AS n_upstream,
               quantilesBFloat16Merge(0.5, 0.95, 0.99)(latency_hist_ms) AS q,
               sum(sync_lag_measured) AS lag_samples,
               quantileBFloat16Merge(0.95)(sync_lag_hist_ms) AS lag_p95_ms
        FROM rows
        GROUP BY partner, artisan, route, upstream
    )
SELECT
    partner, artisan, route, upstream,
    n_calls AS calls,
    n_errors AS errors,
    round(n_errors / n_calls, 5) AS error_rate,
    round(n_gateway / n_calls, 5) AS gateway_error_rate,
    round(n_upstream / n_calls, 5) AS upstream_error_rate,
    round(q[1], 1) AS p50_ms,
    round(q[2], 1) AS p95_ms,
    round(q[3], 1) AS p99_ms,
    lag_samples AS sync_lag_samples,
    if(lag_samples > 0, round(lag_p95_ms / 1000, 3), NULL) AS sync_lag_p95_s,
    if(down.upstream = '', NULL, round(down.down_share, 6)) AS upstream_down_share
FROM calls
LEFT JOIN down ON down.upstream = calls.upstream
ORDER BY errors DESC, calls DESC, partner, artisan, route
LIMIT {limit:UInt32}
