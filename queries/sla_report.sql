-- name: sla_report
-- answers: One SLA over [start, end): an upstream (every route it serves), or one route when `route` is set.
--   Probe uptime, request availability, latency compliance, p50/p95/p99, sync-lag p95, error budgets and a
--   status. Events inside maintenance windows (maint_* arrays: upstream or '*', start, end) are left out.
-- formula: probe uptime % = 100 × checks answered (outcome ok or slow) ÷ checks
-- formula: request availability % = 100 × (1 − bad ÷ requests), bad = a 5xx response or an upstream failure
--   the gateway reported (loomgate.error_source = 'upstream', e.g. timeout, connect error, open circuit);
--   the partner's own failures (loomgate.error_source = 'client': client_timeout, client_abort) are not bad
-- formula: latency compliance % = 100 × requests with Duration ≤ latency_threshold_ms ÷ requests
-- formula: p50/p95/p99 latency and sync-lag p95 from the merged
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
-- formula: error budget = total events × (1 − target ÷ 100); consumed = bad events; remaining = budget − consumed.
--   Events are requests when the window has any, else probes (budget_source says which).
-- note: every ratio is total good ÷ total events over the whole window, never an average of per-bucket ratios.
-- note: status NO DATA without checks or requests; BREACHED when any budget (request availability, probe
--   availability, latency) is overspent or sync-lag p95 > target; AT RISK when any budget has less than
--   at_risk_remaining_pct % left or sync-lag p95 > 80 % of the target; OK otherwise.
-- note: request metrics read the per-minute rollups: counts from loomgate_sla_1m, latency buckets,
--   percentiles and sync lag from loomgate_upstream_1m. Latency compliance is exact for thresholds with two
--   significant digits in ns (300 ms, 1.5 s ...), conservative otherwise. Request windows and maintenance
--   exclusion have minute resolution (a minute counts when its start lies inside); probes are per check.
-- param: start DateTime64(3, 'UTC') = -30d  -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now  -- end of the window (exclusive)
-- param: sla String =  -- SLA name, echoed in the result
-- param: upstream String  -- upstream the SLA covers
-- param: route String =  -- route name; empty = every route of the upstream
-- param: availability_target Float64 = 99.9  -- percent of good events
-- param: latency_threshold_ms Float64 = 0  -- 0 = no latency objective
-- param: latency_target Float64 = 95  -- percent of requests at or under the threshold
-- param: sync_lag_target_ms Float64 = 0  -- p95 sync-lag objective; 0 = none
-- param: at_risk_remaining_pct Float64 = 25  -- AT RISK below this much budget left
-- param: maint_upstreams Array(String) =  -- maintenance windows: upstream name or '*'
-- param: maint_starts Array(DateTime64(3, 'UTC')) =  -- maintenance windows: starts
-- param: maint_ends Array(DateTime64(3, 'UTC')) =  -- maintenance windows: ends (exclusive)
WITH
    probes AS
    (
        SELECT
            countIf(Outcome != 'check_error') AS checks,  -- the gateway's own failures say nothing
            countIf(Outcome NOT IN ('fail', 'check_error')) AS answered
        FROM loomgate_health_checks
        WHERE Upstream = {upstream:String}
          AND Timestamp >= {start:DateTime64(3, 'UTC')} AND Timestamp < {end:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND Timestamp >= s AND Timestamp < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})
    ),
    counts AS
    (
        SELECT sum(calls) AS total, sum(bad) AS bad
        FROM loomgate_sla_1m
        WHERE upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
          AND minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND minute >= s AND minute < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})
    ),
    shape AS
    (
        SELECT
            sumMapMerge(latency_le_ns) AS h,
            arraySum(arrayMap((le, n) -> if(le <= {latency_threshold_ms:Float64} * 1000000, n, 0), h.1, h.2))
                AS fast,
            quantilesBFloat16Merge(0.5, 0.95, 0.99)(latency_hist_ms) AS q,
            sum(sync_lag_measured) AS lag_samples,
            quantileBFloat16Merge(0.95)(sync_lag_hist_ms) AS lag_p95
        FROM loomgate_upstream_1m
        WHERE upstream = {upstream:String} AND ({route:String} = '' OR route = {route:String})
          AND minute >= {start:DateTime64(3, 'UTC')} AND minute < {end:DateTime64(3, 'UTC')}
          AND NOT arrayExists((u, s, e) -> (u = '*' OR u = {upstream:String}) AND minute >= s AND minute < e,
                              {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                              {maint_ends:Array(DateTime64(3, 'UTC'))})
    ),
    figures AS
    (
        SELECT
            checks, answered, total, bad, fast, q, lag_samples, lag_p95,
            1 - {availability_target:Float64} / 100 AS allowed_bad,
            1 - {latency_target:Float64} / 100 AS allowed_slow,
            {latency_threshold_ms:Float64} > 0 AS has_latency,
            {sync_lag_target_ms:Float64} > 0 AND lag_samples > 0 AS has_lag,
            if(total > 0, 'requests', if(checks > 0, 'probes', '')) AS budget_source,
            if(total > 0, total, checks) AS events,
            if(total > 0, bad, checks - answered) AS bad_events,
            events * allowed_bad AS budget_total,
            -- percent of a budget left; a zero budget (target 100 %) is overspent by any bad event
            if(events = 0, NULL, if(budget_total > 0, 100 * (budget_total - bad_events) / budget_total,
                                    if(bad_events > 0, -100., 100.))) AS budget_remaining_pct,
            checks * allowed_bad AS probe_budget,
            if(checks = 0, NULL, if(probe_budget > 0, 100 * (probe_budget - (checks - answered)) / probe_budget,
                                    if(checks > answered, -100., 100.))) AS probe_budget_remaining_pct,
            total * allowed_slow AS latency_budget,
            if(NOT has_latency OR total = 0, NULL,
               if(latency_budget > 0, 100 * (latency_budget - (total - fast)) / latency_budget,
                  if(total > fast, -100., 100.))) AS latency_budget_remaining_pct,
            least(ifNull(budget_remaining_pct, 100), ifNull(probe_budget_remaining_pct, 100),
                  ifNull(latency_budget_remaining_pct, 100)) AS worst_left_pct
        FROM probes, counts, shape
    )
SELECT
    {sla:String} AS sla,
    {upstream:String} AS upstream,
    {route:String} AS route,
    {start:DateTime64(3, 'UTC')} AS window_start,
    {end:DateTime64(3, 'UTC')} AS window_end,
    checks,
    if(checks > 0, round(100 * answered / checks, 4), NULL) AS probe_uptime_pct,
    total AS requests,
    bad AS bad_requests,
    if(total > 0, round(100 * (1 - bad / total), 4), NULL) AS request_availability_pct,
    {availability_target:Float64} AS availability_target_pct,
    if(has_latency, {latency_threshold_ms:Float64}, NULL) AS latency_threshold_ms,
    if(has_latency, {latency_target:Float64}, NULL) AS latency_target_pct,
    if(has_latency AND total > 0, round(100 * fast / total, 4), NULL) AS latency_compliance_pct,
    if(total > 0, round(q[1], 3), NULL) AS p50_ms,
    if(total > 0, round(q[2], 3), NULL) AS p95_ms,
    if(total > 0, round(q[3], 3), NULL) AS p99_ms,
    lag_samples AS sync_lag_samples,
    if(lag_samples > 0, round(lag_p95, 3), NULL) AS sync_lag_p95_ms,
    if({sync_lag_target_ms:Float64} > 0, {sync_lag_target_ms:Float64}, NULL) AS sync_lag_target_ms,
    budget_source,
    round(budget_total, 4) AS budget_total,
    bad_events AS budget_consumed,
    round(budget_total - bad_events, 4) AS budget_remaining,
    round(budget_remaining_pct, 4) AS budget_remaining_pct,
    round(probe_budget_remaining_pct, 4) AS probe_budget_remaining_pct,
    round(latency_budget_remaining_pct, 4) AS latency_budget_remaining_pct,
    multiIf(
        events = 0, 'NO DATA',
        worst_left_pct < 0 OR (has_lag AND lag_p95 > {sync_lag_target_ms:Float64}), 'BREACHED',
        worst_left_pct < {at_risk_remaining_pct:Float64}
            OR (has_lag AND lag_p95 > 0.8 * {sync_lag_target_ms:Float64}), 'AT RISK',
        'OK') AS status,
    multiIf(
        events = 0, 'no checks or requests in the window',
        ifNull(budget_remaining_pct, 100) < 0, 'availability budget overspent',
        ifNull(probe_budget_remaining_pct, 100) < 0, 'probe availability budget overspent',
        ifNull(latency_budget_remaining_pct, 100) < 0, 'latency budget overspent',
        has_lag AND lag_p95 > {sync_lag_target_ms:Float64}, 'sync-lag p95 over target',
        worst_left_pct < {at_risk_remaining_pct:Float64}, 'error budget running low',
        has_lag AND lag_p95 > 0.8 * {sync_lag_target_ms:Float64}, 'sync-lag p95 near target',
        '') AS status_reason
FROM figures
