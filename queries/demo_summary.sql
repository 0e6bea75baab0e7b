-- name: demo_summary
-- answers: Per route and partner over a window: calls, client errors (4xx), server errors (5xx or an
--   aborted response), errors by source (gateway / upstream), median and 95th-percentile latency, and the
--   95th-percentile inventory sync lag where it was measured.
-- formula: error rate = calls with an error source / all calls
-- formula: latency = Duration of the gateway's SERVER span, in ms; sync lag = loomgate.sync_lag_ms, in s
-- note: reads the per-minute rollup loomgate_calls_1m (fed from the SERVER spans of otel_traces), so the
--   window has minute resolution (a minute counts when its start lies inside); a 30-day window does not
--   scan raw spans.
-- formula: p50 / p95 latency and sync-lag p95 from the merged
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
-- note: rows with no route are requests the gateway refused before routing (unknown path, bad key).
-- param: start DateTime64(3) = -1h          -- start of the window (inclusive)
-- param: end DateTime64(3) = now            -- end of the window (exclusive)
SELECT
    if(route = '', '(none)', route) AS route,
    if(partner = '', '(unauthenticated)', partner) AS partner,
    sum(calls) AS calls,
    sum(errors) AS errors,
    round(100 * errors / calls, 1) AS error_pct,
    sum(errors_4xx) AS `4xx`,
    sum(errors_5xx) + sum(aborted) AS `5xx/aborted`,
    sum(errors_gateway) AS by_gateway,
    sum(errors_upstream) AS by_upstream,
    round(quantileBFloat16Merge(0.5)(latency_hist_ms), 2) AS p50_ms,
    round(quantileBFloat16Merge(0.95)(latency_hist_ms), 2) AS p95_ms,
    if(sum(sync_lag_measured) = 0, NULL, round(quantileBFloat16Merge(0.95)(sync_lag_hist_ms) / 1000, 2)) AS lag_p95_s
FROM loomgate_calls_1m
WHERE toStartOfHour(minute) >= toStartOfHour(toStartOfMinute({start:DateTime64(3)}))
  AND minute >= toStartOfMinute({start:DateTime64(3)})
  AND minute < {end:DateTime64(3)}
GROUP BY route, partner
ORDER BY route = '(none)', route, partner
