-- name: demo_span_count
-- answers: How many SERVER spans (one per request that reached the gateway) have been stored since a
--   moment; the demo waits for it to reach the number of requests it sent before it reports.
-- formula: count of otel_traces rows with SpanKind = 'Server' for the service since start
-- param: start DateTime64(3) = -1h          -- count spans that started at or after this time
-- param: service String = loomgate          -- ServiceName the gateway writes (telemetry.service_name)
SELECT count() AS spans
FROM otel_traces
WHERE SpanKind = 'Server'
  AND ServiceName = {service:String}
  AND Timestamp >= {start:DateTime64(3)}
