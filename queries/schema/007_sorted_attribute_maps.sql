-- 007 sorted_attribute_maps: the span row views of 005, with attribute maps sorted by key and protocol
-- errors named per the HTTP semantic conventions.
--
-- Answers: nothing (views).  The OpenTelemetry Collector's clickhouseexporter writes ResourceAttributes and
-- SpanAttributes sorted by key; ClickHouse compares, hashes and groups Map values by their (key, value)
-- sequence, so a map with the same pairs in another order is a different value (GROUP BY SpanAttributes,
-- DISTINCT ResourceAttributes, joins on a map).  Rows Loomgate builds and rows the Collector writes for the
-- same attributes are now equal: mapSort on both maps (collectors/rows.py and collectors/metrics.py sort
-- the maps they build in Python the same way).
--
-- A request the HTTP parser rejected has no method the gateway can trust: its record carries
-- http.request.method '_OTHER' and its span is named 'HTTP' (the conventions' name when the method is
-- unknown), with a route template appended when there is one ('HTTP /v1/...').
--
-- The views are replaced (DROP then CREATE): a batch inserted into loomgate_calls_ingest between the two
-- statements builds no span rows.  Migrations run before the writer inserts anything (the writer applies
-- them at start; `loomgate migrate` runs before gateways in the compose stack), so apply this file with no
-- gateway writing to the database.  Every other convention of 005 holds unchanged.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}.

DROP VIEW IF EXISTS {{DB}}.loomgate_calls_ingest_server_mv {{ON_CLUSTER}};

DROP VIEW IF EXISTS {{DB}}.loomgate_calls_ingest_client_mv {{ON_CLUSTER}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_calls_ingest_server_mv {{ON_CLUSTER}}
TO {{DB}}.otel_traces
AS
WITH
    status >= 500 OR (status = 0 AND error_type != '') AS failed,
    -- Python's float repr for the two float attributes (see the header)
    arrayMap(v -> multiIf(
        isNaN(v) OR isInfinite(v), toString(v),
        abs(v) >= 1e16 OR (abs(v) < 1e-4 AND v != 0), concat(
            -- mantissa: ClickHouse's own when it chose an exponent form, else built from the plain digits
            if(position(toString(v), 'e') > 0,
               substring(toString(v), 1, position(toString(v), 'e') - 1),
               concat(if(v < 0, '-', ''), substring(trim(BOTH '0' FROM replaceOne(trim(LEADING '-' FROM toString(v)), '.', '')), 1, 1),
                      if(length(trim(BOTH '0' FROM replaceOne(trim(LEADING '-' FROM toString(v)), '.', ''))) > 1,
                         concat('.', substring(trim(BOTH '0' FROM replaceOne(trim(LEADING '-' FROM toString(v)), '.', '')), 2)), ''))),
            'e', if(abs(v) < 1, '-', '+'),
            -- exponent: two digits at least, as Python writes it
            if(if(position(toString(v), 'e') > 0,
                                abs(toInt32(substring(toString(v), position(toString(v), 'e') + 1))),
                                if(abs(v) >= 1, length(trim(LEADING '-' FROM toString(v))) - 1,
                                   length(replaceOne(trim(LEADING '-' FROM toString(v)), '.', ''))
                                   - length(trim(LEADING '0' FROM replaceOne(trim(LEADING '-' FROM toString(v)), '.', ''))))) < 10, '0', ''),
            toString(if(position(toString(v), 'e') > 0,
                                abs(toInt32(substring(toString(v), position(toString(v), 'e') + 1))),
                                if(abs(v) >= 1, length(trim(LEADING '-' FROM toString(v))) - 1,
                                   length(replaceOne(trim(LEADING '-' FROM toString(v)), '.', ''))
                                   - length(trim(LEADING '0' FROM replaceOne(trim(LEADING '-' FROM toString(v)), '.', ''))))))),
        v = trunc(v), concat(toString(v), '.0'),
        toString(v)), [ifNull(sync_lag_ms, 0), upstream_duration_ns / 1e6]) AS floats
SELECT
    fromUnixTimestamp64Nano(start_ns) AS Timestamp,
    trace_id AS TraceId,
    span_id AS SpanId,
    parent_span_id AS ParentSpanId,
    '' AS TraceState,
    multiIf(route_template = '', if(method = '_OTHER', 'HTTP', method),
            concat(if(method = '_OTHER', 'HTTP', method), ' ', route_template)) AS SpanName,
    'Server' AS SpanKind,
    service_name AS ServiceName,
    mapSort(resource) AS ResourceAttributes,
    scope_name AS ScopeName,
    scope_version AS ScopeVersion,
    mapSort(mapFilter((k, v) -> v != '' OR k IN ('http.request.method', 'url.path', 'url.scheme',
                                         'http.request.body.size', 'http.response.body.size',
                                         'loomgate.request_id'),
        map('http.request.method', method,
            'url.path', path,
            'url.scheme', scheme,
            'http.request.body.size', toString(request_body_size),
            'http.response.body.size', toString(response_body_size),
            'loomgate.request_id', request_id,
            'http.route', route_template,
            'http.response.status_code', if(status = 0, '', toString(status)),
            'error.type', if(error_type != '', error_type, if(status >= 500, toString(status), '')),
            'server.address', server_address,
            'client.address', client_address,
            'user_agent.original', user_agent,
            'partner.id', partner_id,
            'artisan.id', artisan_id,
            'loomgate.route', route_name,
            'loomgate.upstream', upstream,
            'loomgate.error_source', error_source,
            'loomgate.sync_lag_invalid', if(sync_lag_invalid, 'true', ''),
            'loomgate.sync_lag_ms', if(sync_lag_invalid OR sync_lag_ms IS NULL, '', floats[1]),
            'loomgate.upstream_duration_ms', if(upstream_span_id = '', '', floats[2])))) AS SpanAttributes,
    duration_ns AS Duration,
    if(failed, 'Error', 'Unset') AS StatusCode,
    if(failed, error_type, '') AS StatusMessage
FROM {{DB}}.loomgate_calls_ingest;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{DB}}.loomgate_calls_ingest_client_mv {{ON_CLUSTER}}
TO {{DB}}.otel_traces
AS
WITH
    error_source = 'upstream' AND error_type != '' AS upstream_failed,
    upstream_failed OR upstream_status >= 400 OR upstream_status = 0 AS failed
SELECT
    fromUnixTimestamp64Nano(upstream_start_ns) AS Timestamp,
    trace_id AS TraceId,
    upstream_span_id AS SpanId,
    span_id AS ParentSpanId,
    '' AS TraceState,
    if(method = '_OTHER', 'HTTP', method) AS SpanName,
    'Client' AS SpanKind,
    service_name AS ServiceName,
    mapSort(resource) AS ResourceAttributes,
    scope_name AS ScopeName,
    scope_version AS ScopeVersion,
    mapSort(mapFilter((k, v) -> v != '' OR k IN ('http.request.method', 'loomgate.upstream', 'loomgate.request_id'),
        map('http.request.method', method,
            'loomgate.upstream', upstream,
            'loomgate.request_id', request_id,
            'http.response.status_code', if(upstream_status = 0, '', toString(upstream_status)),
            'server.address', upstream_address,
            'loomgate.route', route_name,
            'partner.id', partner_id,
            'artisan.id', artisan_id,
            'error.type', multiIf(upstream_failed, error_type,
                                  upstream_status >= 400, toString(upstream_status), '')))) AS SpanAttributes,
    upstream_duration_ns AS Duration,
    if(failed, 'Error', 'Unset') AS StatusCode,
    if(upstream_failed, error_type, '') AS StatusMessage
FROM {{DB}}.loomgate_calls_ingest
WHERE upstream_span_id != '';
