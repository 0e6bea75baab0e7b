-- name: recent_checks
-- answers: The latest health-check results per upstream (newest first): outcome, HTTP status, response time,
--   failure reason and the state after each check.
-- param: upstream String =  -- empty = every upstream
-- param: per_upstream UInt32 = 20  -- results per upstream
SELECT
    Upstream AS upstream,
    Timestamp AS at,
    Outcome AS outcome,
    StatusCode AS status_code,
    round(ResponseTimeMs, 3) AS response_time_ms,
    Reason AS reason,
    State AS state
FROM loomgate_health_checks
WHERE {upstream:String} = '' OR Upstream = {upstream:String}
ORDER BY upstream, at DESC
LIMIT {per_upstream:UInt32} BY upstream
