-- name: benchmark_scorecard
-- answers: The marketplace against the six industry benchmarks of its planning documents, over a window:
--   cart abandonment < 20 %, post-purchase survey response > 25 %, data sync latency < 5 s, repeat
--   purchase > 30 %, loyalty programme engagement ≥ 40 % (n/a without loyalty data), integration uptime
--   ≥ 99.9 %.  One row per benchmark: target, actual, status (meets / misses / n/a) and what it is based on.
-- formula: cart abandonment = 1 − carts purchased ÷ carts created (carts created in the window)
-- formula: post-purchase survey response = answered ÷ delivered post-purchase surveys
-- formula: data sync latency = p95 of measured sync lags (loomgate.sync_lag_ms), seconds, from the merged
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
-- formula: repeat purchase = buyers with 2+ orders ÷ buyers with 1+ (marketplace-wide, by buyer)
-- formula: loyalty engagement = members active (earn/redeem) in the window ÷ members enrolled by its end
-- formula: integration uptime = 1 − Σ check interval while DOWN ÷ Σ check interval over every upstream's
--   health checks (probe uptime); without checks, 1 − upstream-caused failed calls ÷ calls
-- note: probe uptime is not the SLA report's request availability: an upstream can answer its health
--   check while requests through it fail, so the two may disagree; the basis column says which was used.
-- note: KPI tables read with FINAL; calls from the per-day rollup loomgate_calls_1d for whole UTC days and
--   loomgate_calls_1m for the partial days at the window's edges.
-- param: start DateTime64(3, 'UTC') = -30d   -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now      -- end of the window (exclusive)
WITH
    {start:DateTime64(3, 'UTC')} AS w_start,
    {end:DateTime64(3, 'UTC')} AS w_end,
    carts AS (
        SELECT count() AS created, countIf(purchased) AS bought
        FROM (
            SELECT cart_id, minIf(ts, event = 'created') AS created_at, countIf(event = 'created') > 0 AS has_created,
                   countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= w_start - INTERVAL 1 DAY AND ts < w_end + INTERVAL 1 DAY
            GROUP BY cart_id
        )
        WHERE has_created AND created_at >= w_start AND created_at < w_end
    ),
    surveys AS (
        SELECT count() AS delivered, countIf(answered) AS answered_n
        FROM kpi_survey_responses FINAL
        WHERE kind = 'post_purchase' AND ts >= w_start AND ts < w_end
    ),
    toStartOfMinute(w_start) AS m_start,
    -- whole days [d_first, d_last) from the per-day rollup; the minutes outside them from the per-minute one
    toStartOfDay(m_start - toIntervalMillisecond(1)) + toIntervalDay(1) AS d_first,
    toStartOfDay(toStartOfMinute(w_end - toIntervalMillisecond(1)) + toIntervalMinute(1)) AS d_last,
    lag AS (
        SELECT sum(sync_lag_measured) AS samples, quantileBFloat16Merge(0.95)(sync_lag_hist_ms) / 1000 AS p95_s,
               sum(calls) AS n_calls, sum(errors_upstream) AS n_upstream_errors
        FROM (
            SELECT calls, errors_upstream, sync_lag_measured, sync_lag_hist_ms
            FROM loomgate_calls_1d
            WHERE day >= toDate(d_first) AND day < toDate(d_last)
            UNION ALL
            SELECT calls, errors_upstream, sync_lag_measured, sync_lag_hist_ms
            FROM loomgate_calls_1m
            -- stated on toStartOfHour(minute), the first sort key column, so the index skips the whole days
            WHERE toStartOfHour(minute) >= toStartOfHour(m_start) AND toStartOfHour(minute) < w_end
              AND (toStartOfHour(minute) < d_first OR toStartOfHour(minute) >= d_last)
              AND minute >= m_start AND minute < w_end
        )
    ),
    buyers AS (
        SELECT count() AS n_buyers, countIf(n >= 2) AS n_repeat
        FROM (SELECT buyer_id, count() AS n FROM kpi_orders FINAL WHERE ts >= w_start AND ts < w_end
              GROUP BY buyer_id)
    ),
    loyalty AS (
        SELECT countIf(enrolled < w_end) AS members,
               countIf(enrolled < w_end AND last_active >= w_start AND last_active < w_end) AS engaged
        FROM kpi_loyalty FINAL
    ),
    uptime AS (
        SELECT sum(IntervalS) AS checked_s, sumIf(IntervalS, State = 'DOWN') AS down_s
        FROM loomgate_health_checks
        WHERE Timestamp >= w_start AND Timestamp < w_end
    ),
    rows AS (
        SELECT 1 AS pos, 'cart abandonment' AS benchmark, '< 20 %' AS target,
               if(created = 0, NULL, 100 * (1 - bought / created)) AS actual, '%' AS unit,
               if(actual IS NULL, NULL, actual < 20) AS meets,
               concat(toString(created), ' carts created') AS basis
        FROM carts
        UNION ALL
        SELECT 2, 'post-purchase survey response', '> 25 %',
               if(delivered = 0, NULL, 100 * answered_n / delivered), '%',
               if(delivered = 0, NULL, 100 * answered_n / delivered > 25),
               concat(toString(delivered), ' surveys delivered')
        FROM surveys
        UNION ALL
        SELECT 3, 'data sync latency (p95)', '< 5 s', if(samples = 0, NULL, p95_s), 's',
               if(samples = 0, NULL, p95_s < 5), concat(toString(samples), ' measured syncs')
        FROM lag
        UNION ALL
        SELECT 4, 'repeat purchase', '> 30 %', if(n_buyers = 0, NULL, 100 * n_repeat / n_buyers), '%',
               if(n_buyers = 0, NULL, 100 * n_repeat / n_buyers > 30), concat(toString(n_buyers), ' buyers')
        FROM buyers
        UNION ALL
        SELECT 5, 'loyalty programme engagement', '≥ 40 %', if(members = 0, NULL, 100 * engaged / members), '%',
               if(members = 0, NULL, 100 * engaged / members >= 40),
               if(members = 0, 'n/a: no loyalty data', concat(toString(members), ' members'))
        FROM loyalty
        UNION ALL
        SELECT 6, 'integration uptime', '≥ 99.9 %',
               multiIf(u.checked_s > 0, 100 * (1 - u.down_s / u.checked_s),
                       l.n_calls > 0, 100 * (1 - l.n_upstream_errors / l.n_calls), NULL) AS up_actual, '%',
               if(up_actual IS NULL, NULL, up_actual >= 99.9),
               multiIf(u.checked_s > 0, concat('probe uptime: health checks over ', toString(round(u.checked_s / 3600, 1)),
                                               ' h (failed requests are in the SLA report)'),
                       l.n_calls > 0, concat(toString(l.n_calls), ' calls (no health checks)'), 'no data')
        FROM uptime AS u CROSS JOIN lag AS l
    )
SELECT benchmark, target, round(actual, 3) AS actual, unit,
       multiIf(meets IS NULL, 'n/a', meets, 'meets', 'misses') AS status, basis
FROM rows
ORDER BY pos
