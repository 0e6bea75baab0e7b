-- name: demo_summary
-- answers: Per route and partner over a window: calls, errors split by who failed (gateway / upstream /
--   client), responses by HTTP status class, median and 95th-percentile latency, and the 95th-percentile
--   inventory sync lag where it was measured.
-- formula: errors = err_gateway + err_upstream + err_client (every error names exactly one source)
-- formula: error rate = errors / calls
-- formula: status_4xx, status_5xx, aborted count responses by HTTP status whether or not they are errors: an
--   upstream's own 4xx answer (a 404 for an unknown listing) is passed through and is not an error, and
--   an error may end with no status (aborted) or, for a response broken mid-body, with the status sent
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
    sum(errors_gateway) AS err_gateway,
    sum(errors_upstream) AS err_upstream,
    -- the rollup counts errors and two of the three sources; the third is the rest by construction
    errors - err_gateway - err_upstream AS err_client,
    sum(errors_4xx) AS status_4xx,
    sum(errors_5xx) AS status_5xx,
    sum(aborted) AS aborted,
    round(quantileBFloat16Merge(0.5)(latency_hist_ms), 2) AS p50_ms,
    round(quantileBFloat16Merge(0.95)(latency_hist_ms), 2) AS p95_ms,
    if(sum(sync_lag_measured) = 0, NULL, round(quantileBFloat16Merge(0.95)(sync_lag_hist_ms) / 1000, 2)) AS lag_p95_s
FROM loomgate_calls_1m
WHERE toStartOfHour(minute) >= toStartOfHour(toStartOfMinute({start:DateTime64(3)}))
  AND minute >= toStartOfMinute({start:DateTime64(3)})
  AND minute < {end:DateTime64(3)}
GROUP BY route, partner
ORDER BY route = '(none)', route, partner
