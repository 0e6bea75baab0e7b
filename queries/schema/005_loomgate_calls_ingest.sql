-- 005 loomgate_calls_ingest: the span row builder, in ClickHouse.
--
-- Answers: nothing (ENGINE = Null keeps no rows).  Writers insert one flat row per gateway call (the fields
-- of collectors.record.CallRecord plus the batch's service name, resource and scope); the two views below
-- turn each into the SERVER span row and, when an upstream call was made, the CLIENT child span row of
-- otel_traces, with the same values collectors.rows.span_rows builds in Python (the OTLP exporter's view of
-- the same spans; tests/telemetry_schema/test_ingest.py holds the two to identical rows).  Flat columns cost
-- the writer a fraction of the serialisation of Map columns, and ClickHouse builds the maps vectorised.
--
-- Conventions (see collectors/rows.py): SpanKind 'Server' / 'Client'; StatusCode 'Error' for a SERVER span on
-- 5xx or on a lost client connection with an error (4xx stays 'Unset'), for a CLIENT span on 4xx/5xx or no
-- response; optional attributes with an empty value are left out (mapFilter), the six always-present ones
-- (method, path, scheme, body sizes, request id) never are.  Float attributes are written as Python's
-- repr() writes them ('40.0', '1520.25', '1e-05'): ClickHouse's toString agrees except for integral values
-- (no '.0') and outside [1e-4, 1e16) (other exponent forms), which are rewritten here.
--
-- Replays: a writer inserts each batch with insert_deduplication_token and
-- deduplicate_blocks_in_dependent_materialized_views = 1; each view's block into otel_traces gets a token
-- derived from it, so a replayed batch is dropped in otel_traces and therefore in the rollups fed by it.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}.

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_calls_ingest {{ON_CLUSTER}}
(
    service_name LowCardinality(String),
    resource Map(LowCardinality(String), String),
    scope_name LowCardinality(String),
    scope_version LowCardinality(String),
    start_ns Int64,
    duration_ns UInt64,
    trace_id String,
    span_id String,
    parent_span_id String,
    method LowCardinality(String),
    route_template LowCardinality(String),
    route_name LowCardinality(String),
    path String,
    status UInt16,
    error_type LowCardinality(String),
    error_source LowCardinality(String),
    partner_id String,
    artisan_id String,
    upstream LowCardinality(String),
    upstream_span_id String,
    upstream_start_ns Int64,
    upstream_duration_ns UInt64,
    sync_lag_ms Nullable(Float64),
    sync_lag_invalid Bool,
    server_address String,
    client_address String,
    user_agent String,
    request_body_size UInt64,
    response_body_size UInt64,
    request_id String,
    scheme LowCardinality(String),
    upstream_status UInt16,
    upstream_address String DEFAULT ''
)
ENGINE = Null;

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
    if(route_template = '', method, concat(method, ' ', route_template)) AS SpanName,
    'Server' AS SpanKind,
    service_name AS ServiceName,
    resource AS ResourceAttributes,
    scope_name AS ScopeName,
    scope_version AS ScopeVersion,
    mapFilter((k, v) -> v != '' OR k IN ('http.request.method', 'url.path', 'url.scheme',
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
            'loomgate.upstream_duration_ms', if(upstream_span_id = '', '', floats[2]))) AS SpanAttributes,
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
    method AS SpanName,
    'Client' AS SpanKind,
    service_name AS ServiceName,
    resource AS ResourceAttributes,
    scope_name AS ScopeName,
    scope_version AS ScopeVersion,
    mapFilter((k, v) -> v != '' OR k IN ('http.request.method', 'loomgate.upstream', 'loomgate.request_id'),
        map('http.request.method', method,
            'loomgate.upstream', upstream,
            'loomgate.request_id', request_id,
            'http.response.status_code', if(upstream_status = 0, '', toString(upstream_status)),
            'server.address', upstream_address,
            'loomgate.route', route_name,
            'partner.id', partner_id,
            'artisan.id', artisan_id,
            'error.type', multiIf(upstream_failed, error_type,
                                  upstream_status >= 400, toString(upstream_status), ''))) AS SpanAttributes,
    upstream_duration_ns AS Duration,
    if(failed, 'Error', 'Unset') AS StatusCode,
    if(upstream_failed, error_type, '') AS StatusMessage
FROM {{DB}}.loomgate_calls_ingest
WHERE upstream_span_id != '';
