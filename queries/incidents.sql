-- name: incidents
-- answers: Incidents from the health checks: contiguous periods in which an upstream was DOWN or DEGRADED,
--   overlapping [start, end), with start, end (NULL while still open), duration, worst state, number of checks
--   and failed checks, the distinct failure reasons (first 5) and whether a maintenance window overlapped.
-- formula: an incident starts at the first check whose resulting state is DOWN or DEGRADED after a check that
--   was not, and ends at the next check whose resulting state is neither (UP, or UNKNOWN after a restart)
-- formula: duration_s = (ended_at, or `end` while open) − started_at
-- note: states come from loomgate_health_checks.State (the state after each check; see collectors/health.py).
-- param: start DateTime64(3, 'UTC') = -30d  -- incidents still running at or after this time
-- param: end DateTime64(3, 'UTC') = now  -- incidents started before this time
-- param: upstream String =  -- empty = every upstream
-- param: maint_upstreams Array(String) =  -- maintenance windows: upstream name or '*'
-- param: maint_starts Array(DateTime64(3, 'UTC')) =  -- maintenance windows: starts
-- param: maint_ends Array(DateTime64(3, 'UTC')) =  -- maintenance windows: ends (exclusive)
WITH
    checks AS
    (
        SELECT
            Upstream, Timestamp, State, Outcome, Reason,
            State IN ('DOWN', 'DEGRADED') AS bad,
            bad != lagInFrame(bad, 1, false) OVER (PARTITION BY Upstream ORDER BY Timestamp
                                                   ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS edge
        FROM loomgate_health_checks
        WHERE ({upstream:String} = '' OR Upstream = {upstream:String})
          AND Timestamp < {end:DateTime64(3, 'UTC')}
    ),
    runs AS
    (
        SELECT
            *,
            sum(edge) OVER (PARTITION BY Upstream ORDER BY Timestamp
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
        FROM checks
    ),
    grouped AS
    (
        SELECT
            Upstream AS upstream,
            run,
            any(bad) AS is_bad,
            min(Timestamp) AS first_ts,
            count() AS checks,
            countIf(Outcome = 'fail') AS failed_checks,
            countIf(Outcome = 'slow') AS slow_checks,
            if(countIf(State = 'DOWN') > 0, 'DOWN', 'DEGRADED') AS worst_state,
            arraySlice(arraySort(groupUniqArrayIf(Reason, Reason != '')), 1, 5) AS reasons
        FROM runs
        GROUP BY Upstream, run
    ),
    bounded AS
    (
        SELECT
            *,
            leadInFrame(toNullable(first_ts), 1, NULL) OVER (PARTITION BY upstream ORDER BY run
                                                             ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_ts
        FROM grouped
    )
SELECT
    upstream,
    first_ts AS started_at,
    next_ts AS ended_at,
    isNull(next_ts) AS open,
    round(dateDiff('millisecond', first_ts, ifNull(next_ts, {end:DateTime64(3, 'UTC')})) / 1000, 3) AS duration_s,
    worst_state,
    checks,
    failed_checks,
    slow_checks,
    reasons,
    arrayExists((u, s, e) -> (u = '*' OR u = upstream) AND s < ifNull(next_ts, {end:DateTime64(3, 'UTC')})
                             AND e > first_ts,
                {maint_upstreams:Array(String)}, {maint_starts:Array(DateTime64(3, 'UTC'))},
                {maint_ends:Array(DateTime64(3, 'UTC'))}) AS during_maintenance
FROM bounded
WHERE is_bad AND ifNull(next_ts, {end:DateTime64(3, 'UTC')}) > {start:DateTime64(3, 'UTC')}
ORDER BY started_at DESC, upstream
