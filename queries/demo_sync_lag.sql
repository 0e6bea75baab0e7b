-- name: demo_sync_lag
-- answers: Per artisan over a window: how many inventory syncs had a measured sync lag, the median and
--   95th-percentile lag, and the share of syncs slower than a target, slowest artisans first.
-- formula: sync lag = upstream acknowledgement time - source change time (loomgate.sync_lag_ms)
-- formula: over target % = syncs with lag > target / syncs with a measured lag
-- note: syncs whose source time was in the future beyond the allowed skew are counted as invalid.
-- param: start DateTime64(3) = -1h          -- start of the window (inclusive)
-- param: end DateTime64(3) = now            -- end of the window (exclusive)
-- param: service String = loomgate          -- ServiceName the gateway writes (telemetry.service_name)
-- param: target_s Float64 = 5               -- sync lag target in seconds (marketplace benchmark: < 5 s)
SELECT
    SpanAttributes['artisan.id'] AS artisan,
    countIf(mapContains(SpanAttributes, 'loomgate.sync_lag_ms')) AS syncs,
    countIf(SpanAttributes['loomgate.sync_lag_invalid'] = 'true') AS invalid,
    round(quantileExactIf(0.5)(toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']),
                               mapContains(SpanAttributes, 'loomgate.sync_lag_ms')) / 1000, 2) AS p50_s,
    round(quantileExactIf(0.95)(toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']),
                                mapContains(SpanAttributes, 'loomgate.sync_lag_ms')) / 1000, 2) AS p95_s,
    round(100 * countIf(toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) > {target_s:Float64} * 1000)
          / greatest(syncs, 1), 1) AS over_target_pct
FROM otel_traces
WHERE SpanKind = 'Server'
  AND ServiceName = {service:String}
  AND Timestamp >= {start:DateTime64(3)}
  AND Timestamp < {end:DateTime64(3)}
  AND SpanAttributes['artisan.id'] != ''
  AND (mapContains(SpanAttributes, 'loomgate.sync_lag_ms') OR SpanAttributes['loomgate.sync_lag_invalid'] = 'true')
GROUP BY artisan
ORDER BY p95_s DESC, artisan
