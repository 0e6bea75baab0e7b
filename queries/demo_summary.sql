-- name: demo_summary
-- answers: Per route and partner over a window, from the gateway's SERVER spans: calls, client errors
--   (4xx), server errors (5xx or an aborted response), errors by source (gateway / upstream), median and
--   95th-percentile latency, and the 95th-percentile inventory sync lag where it was measured.
-- formula: error rate = spans with an error.type / all spans
-- formula: latency = Duration (ns) of the SERVER span, shown in ms; sync lag = loomgate.sync_lag_ms, in s
-- note: rows with no route are requests the gateway refused before routing (unknown path, bad key).
-- note: a 5xx the upstream answered itself counts as an upstream error even where the span carries no
--   loomgate.error_source.
-- param: start DateTime64(3) = -1h          -- start of the window (inclusive)
-- param: end DateTime64(3) = now            -- end of the window (exclusive)
-- param: service String = loomgate          -- ServiceName the gateway writes (telemetry.service_name)
SELECT
    route,
    partner,
    count() AS calls,
    countIf(error_type != '') AS errors,
    round(100 * errors / calls, 1) AS error_pct,
    countIf(status BETWEEN 400 AND 499) AS `4xx`,
    countIf(status NOT BETWEEN 100 AND 499) AS `5xx/aborted`,
    countIf(source = 'gateway') AS by_gateway,
    countIf(source = 'upstream' OR (source = '' AND status >= 500)) AS by_upstream,
    round(quantileExact(0.5)(duration_ns) / 1e6, 2) AS p50_ms,
    round(quantileExact(0.95)(duration_ns) / 1e6, 2) AS p95_ms,
    round(quantileExactIf(0.95)(lag_ms, has_lag) / 1000, 2) AS lag_p95_s
FROM
(
    SELECT
        if(SpanAttributes['loomgate.route'] = '', '(none)', SpanAttributes['loomgate.route']) AS route,
        if(SpanAttributes['partner.id'] = '', '(unauthenticated)', SpanAttributes['partner.id']) AS partner,
        SpanAttributes['error.type'] AS error_type,
        SpanAttributes['loomgate.error_source'] AS source,
        toUInt16OrZero(SpanAttributes['http.response.status_code']) AS status,
        Duration AS duration_ns,
        mapContains(SpanAttributes, 'loomgate.sync_lag_ms') AS has_lag,
        toFloat64OrZero(SpanAttributes['loomgate.sync_lag_ms']) AS lag_ms
    FROM otel_traces
    WHERE SpanKind = 'Server'
      AND ServiceName = {service:String}
      AND Timestamp >= {start:DateTime64(3)}
      AND Timestamp < {end:DateTime64(3)}
)
GROUP BY route, partner
ORDER BY route = '(none)', route, partner
