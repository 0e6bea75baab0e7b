-- name: status_daily_uptime
-- answers: Per UTC day in [start, end) for one upstream (and optionally one of its routes): health checks and
--   how many were answered, requests and how many were bad; maintenance excluded. Feeds the status page's
--   daily uptime bars.
-- formula: probe uptime % of a day = 100 × answered ÷ checks; request availability % = 100 × (1 − bad ÷ requests)
-- note: totals per day (good ÷ total), never averages of finer ratios; requests read the loomgate_sla_1m rollup.
--   Days without checks or requests are absent.
-- param: start DateTime64(3, 'UTC') = -90d  -- first day (inclusive)
-- param: end DateTime64(3, 'UTC') = now  -- end of the range (exclusive)
-- param: upstream String  -- upstream name
-- param: route String =  -- route name; empty = every route of the upstream
-- param: maint_upstreams Array(String) =  -- maintenance windows: upstream name or '*'
-- param: maint_starts Array(DateTime64(3, 'UTC')) =  -- maintenance windows: starts
-- param: maint_ends Array(DateTime64(3, 'UTC')) =  -- maintenance windows: ends (exclusive)
WITH
    probes AS
    (
        SELECT toDate(Timestamp) AS day, countIf(Outcome != 'check_error') AS checks,
               countIf(Outcome NOT IN ('fail', 'check_error')) AS answered
        FROM loomgate_health_checks
        WHERE Upstream = {upstream:String}
          AND Timestamp >= {start:DateTime64(3, 'UTC')} AND Timestamp < {end:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND Timestamp >= s AND Timestamp < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})
        GROUP BY day
    ),
    requests AS
    (
        SELECT toDate(minute) AS day, sum(calls) AS requests, sum(bad) AS bad
        FROM loomgate_sla_1m
        WHERE upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
          AND minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND minute >= s AND minute < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})
        GROUP BY day
    )
SELECT
    day,
    checks,
    answered,
    requests,
    bad,
    if(checks > 0, round(100 * answered / checks, 4), NULL) AS probe_uptime_pct,
    if(requests > 0, round(100 * (1 - bad / requests), 4), NULL) AS request_availability_pct
FROM probes
FULL OUTER JOIN requests USING (day)
ORDER BY day
