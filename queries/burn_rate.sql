-- name: burn_rate
-- answers: Multiwindow, multi-burn-rate check of one SLA (an upstream, or one route when `route` is set) at
--   `now`, per signal and per rule (long window, short window, share of the budget it may spend). Signals:
--   availability of the requests served by the gateway and of the health-check probes (objective
--   `objective`), and, when the SLA has a latency objective, the requests' latency (objective
--   `latency_objective` % of requests within `latency_threshold_ms`). One row per signal and rule.
-- formula: factor = budget_fraction × window_hours ÷ long-window hours (30-day window: 2 % in 1 h → 14.4×,
--   5 % in 6 h → 6×, 10 % in 1 d → 3×, 10 % in 3 d → 1×)
-- formula: error ratio = bad events ÷ events in the window; burn rate = error ratio ÷ (1 − objective ÷ 100)
-- formula: latency: events = requests, bad = requests slower than latency_threshold_ms (per-request
--   durations from the loomgate_upstream_1m buckets, as sla_report counts them)
-- formula: firing = long-window ratio > factor × (1 − objective ÷ 100) AND short-window ratio > the same
-- note: windows are whole minutes ending at `now` (a minute counts when its start ≥ now − window).
--   Requests come from the loomgate_sla_1m rollup: bad = 5xx or an upstream failure reported by the gateway;
--   probes from loomgate_health_checks: bad = failed check.
--   Events inside maintenance windows are left out. A signal without events in a window has ratio 0.
-- param: now DateTime64(3, 'UTC') = now  -- evaluation time (end of every window)
-- param: upstream String  -- upstream the SLO covers
-- param: route String =  -- route name; empty = every route of the upstream
-- param: objective Float64 = 99.9  -- availability objective, percent
-- param: latency_threshold_ms Float64 = 0  -- latency objective's threshold; 0 = no latency signal
-- param: latency_objective Float64 = 95  -- percent of requests that must be within the threshold
-- param: window_hours Float64 = 720  -- SLO compliance window (30 days)
-- param: long_windows_s Array(UInt32) = 3600,21600,86400,259200  -- long window of each rule, seconds
-- param: short_windows_s Array(UInt32) = 300,1800,7200,21600  -- short window of each rule, seconds
-- param: budget_fractions Array(Float64) = 0.02,0.05,0.1,0.1  -- budget share each rule may spend
-- param: maint_upstreams Array(String) =  -- maintenance windows: upstream name or '*'
-- param: maint_starts Array(DateTime64(3, 'UTC')) =  -- maintenance windows: starts
-- param: maint_ends Array(DateTime64(3, 'UTC')) =  -- maintenance windows: ends (exclusive)
WITH
    -- whether a minute (or probe time) counts: inside the longest long window, outside every maintenance
    -- window of the upstream; one definition for all three signals
    (t -> t >= toStartOfMinute({now:DateTime64(3, 'UTC')} - toIntervalSecond(arrayMax({long_windows_s:Array(UInt32)})))
          AND t < {now:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND t >= s AND t < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})) AS counted,
    rules AS
    (
        SELECT
            i AS rule,
            {long_windows_s:Array(UInt32)}[i] AS long_s,
            {short_windows_s:Array(UInt32)}[i] AS short_s,
            {budget_fractions:Array(Float64)}[i] AS budget_fraction,
            budget_fraction * {window_hours:Float64} / (long_s / 3600) AS factor
        FROM (SELECT arrayJoin(arrayEnumerate({long_windows_s:Array(UInt32)})) AS i)
    ),
    requests AS
    (
        SELECT
            'requests' AS source,
            minute,
            sum(calls) AS events,
            sum(bad) AS bad
        FROM loomgate_sla_1m
        WHERE upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
          AND counted(minute)
        GROUP BY minute
    ),
    probes AS
    (
        SELECT
            'probes' AS source,
            toStartOfMinute(Timestamp) AS minute,
            countIf(Outcome != 'check_error') AS events,  -- the gateway's own failures say nothing
            countIf(Outcome = 'fail') AS bad
        FROM loomgate_health_checks
        WHERE Upstream = {upstream:String}
          AND counted(Timestamp)
        GROUP BY minute
    ),
    latency AS
    (
        SELECT
            'latency' AS source,
            minute,
            calls AS events,
            toUInt64(events - arraySum(arrayMap((le, n) -> if(le <= {latency_threshold_ms:Float64} * 1000000, n, 0),
                                                h.1, h.2))) AS bad
        FROM
        (
            SELECT minute, sum(calls) AS calls, sumMapMerge(latency_le_ns) AS h
            FROM loomgate_upstream_1m
            WHERE {latency_threshold_ms:Float64} > 0
              AND upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
              AND counted(minute)
            GROUP BY minute
        )
    ),
    buckets AS
    (
        SELECT source, minute, events, bad FROM requests
        UNION ALL
        SELECT source, minute, events, bad FROM probes
        UNION ALL
        SELECT source, minute, events, bad FROM latency
    ),
    sums AS
    (
        SELECT
            source, rule, long_s, short_s, budget_fraction, factor,
            sumIf(events, minute >= {now:DateTime64(3, 'UTC')} - toIntervalSecond(long_s)) AS long_events,
            sumIf(bad, minute >= {now:DateTime64(3, 'UTC')} - toIntervalSecond(long_s)) AS long_bad,
            sumIf(events, minute >= {now:DateTime64(3, 'UTC')} - toIntervalSecond(short_s)) AS short_events,
            sumIf(bad, minute >= {now:DateTime64(3, 'UTC')} - toIntervalSecond(short_s)) AS short_bad
        FROM buckets CROSS JOIN rules
        GROUP BY source, rule, long_s, short_s, budget_fraction, factor
    )
SELECT
    source,
    rule,
    long_s AS long_window_s,
    short_s AS short_window_s,
    budget_fraction,
    factor,
    if(source = 'latency', {latency_objective:Float64}, {objective:Float64}) AS objective_pct,
    factor * (1 - objective_pct / 100) AS threshold,
    long_events,
    long_bad,
    if(long_events > 0, long_bad / long_events, 0) AS long_error_ratio,
    short_events,
    short_bad,
    if(short_events > 0, short_bad / short_events, 0) AS short_error_ratio,
    round(long_error_ratio / (1 - objective_pct / 100), 6) AS long_burn_rate,
    round(short_error_ratio / (1 - objective_pct / 100), 6) AS short_burn_rate,
    long_error_ratio > threshold AND short_error_ratio > threshold AS firing
FROM sums
ORDER BY source, rule
