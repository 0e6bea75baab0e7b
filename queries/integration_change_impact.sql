-- name: integration_change_impact
-- answers: For each integration change, KPIs and health of the affected artisans in equal windows before
--   and after it, with the deltas (a cohort pre/post comparison).  Affected artisans: the change's artisan,
--   or for '*' every artisan that called through the change's partner in either window.
-- formula: before = [ts − window_days, ts), after = [ts, ts + window_days); delta = after − before
-- formula: error rate = errors ÷ calls; p95 latency and sync-lag p95 from the merged
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
-- formula: repeat purchase = buyers with 2+ orders ÷ buyers with 1+ (per artisan × buyer, in each window);
--   cart abandonment = 1 − carts purchased ÷ carts created; AOV = revenue ÷ orders
-- note: after_complete = 0 when the after window reaches past `now` (a partial window: read with care).
--   A before/after difference can also come from seasonality, market-wide drift or other changes in the
--   same windows: integration_change_did nets those out against unchanged artisans (use it for effects).
-- note: health from the per-day rollup loomgate_calls_1d for the UTC days wholly inside a window and from
--   loomgate_calls_1m for the partial days at the windows' edges, filtered to the change's partner; KPI
--   tables read with FINAL.
-- param: window_days UInt16 = 30   -- length of each window
-- param: change_id String =        -- only this change (empty = all)
-- param: partner String =          -- only changes of this partner (empty = all)
WITH
    toIntervalDay({window_days:UInt16}) AS win,
    changes AS (
        SELECT change_id, partner_id, artisan_id AS scope, kind, description, ts,
               ts - win AS b_start, ts + win AS a_end
        FROM kpi_integration_changes FINAL
        WHERE ({change_id:String} = '' OR change_id = {change_id:String})
          AND ({partner:String} = '' OR partner_id = {partner:String})
    ),
    -- Each rollup row is matched to the changes it falls under without a JOIN (which would copy every
    -- latency state): the few changes are one array, filtered per row.  A UTC day wholly inside a change's
    -- before or after window is read from the per-day rollup; the minutes of the other days (partial days
    -- at the windows' edges) from the per-minute rollup, so each minute counts once per change.
    (SELECT groupArray((change_id, partner_id, scope, ts, b_start, a_end)) FROM changes) AS change_list,
    (d, c) -> (d >= c.5 AND d + toIntervalDay(1) <= toStartOfMinute(c.4 - toIntervalMillisecond(1))
                                                    + toIntervalMinute(1))
              OR (d >= c.4 AND d + toIntervalDay(1) <= toStartOfMinute(c.6 - toIntervalMillisecond(1))
                                                       + toIntervalMinute(1)) AS whole_day,
    -- The hours of the partial days (the days holding a window edge that is not a midnight): the only part of
    -- the per-minute rollup read, stated on its first sort key column so that the index skips the rest.
    (SELECT groupUniqArray(toStartOfDay(edge) + toIntervalHour(h))
     FROM changes
     ARRAY JOIN [toDateTime64(b_start, 3, 'UTC'),
                 toStartOfMinute(ts - toIntervalMillisecond(1)) + toIntervalMinute(1),
                 toStartOfMinute(a_end - toIntervalMillisecond(1)) + toIntervalMinute(1)] AS edge
     ARRAY JOIN range(24) AS h
     WHERE edge != toStartOfDay(edge)) AS edge_hours,
    health_rows AS (
        SELECT ch.1 AS change_id, toDateTime(day, 'UTC') >= ch.4 AS after, artisan,
               calls, errors, latency_hist_ms, sync_lag_measured AS lag_n, sync_lag_hist_ms
        FROM loomgate_calls_1d
        ARRAY JOIN arrayFilter(c -> c.2 = partner AND (c.3 = '*' OR c.3 = artisan)
                                    AND whole_day(toDateTime(day, 'UTC'), c), change_list) AS ch
        WHERE day >= toDate((SELECT min(b_start) FROM changes)) AND day <= toDate((SELECT max(a_end) FROM changes))
          AND partner IN (SELECT partner_id FROM changes) AND artisan != ''
        UNION ALL
        SELECT ch.1 AS change_id, minute >= ch.4 AS after, artisan,
               calls, errors, latency_hist_ms, sync_lag_measured AS lag_n, sync_lag_hist_ms
        FROM loomgate_calls_1m
        ARRAY JOIN arrayFilter(c -> c.2 = partner AND (c.3 = '*' OR c.3 = artisan)
                                    AND minute >= c.5 AND minute < c.6
                                    AND NOT whole_day(toDateTime(toDate(minute, 'UTC'), 'UTC'), c),
                               change_list) AS ch
        WHERE toStartOfHour(minute) IN (SELECT arrayJoin(edge_hours))
          AND partner IN (SELECT partner_id FROM changes) AND artisan != ''
    ),
    health AS (
        SELECT change_id,
               uniqExact(artisan) AS artisans,
               sumIf(calls, NOT after) AS calls_before,
               sumIf(calls, after) AS calls_after,
               sumIf(errors, NOT after) / nullIf(calls_before, 0) AS error_rate_before,
               sumIf(errors, after) / nullIf(calls_after, 0) AS error_rate_after,
               quantileBFloat16MergeIf(0.95)(latency_hist_ms, NOT after) AS p95_before,
               quantileBFloat16MergeIf(0.95)(latency_hist_ms, after) AS p95_after,
               if(sumIf(lag_n, NOT after) > 0, quantileBFloat16MergeIf(0.95)(sync_lag_hist_ms, NOT after) / 1000, NULL)
                   AS lag_before,
               if(sumIf(lag_n, after) > 0, quantileBFloat16MergeIf(0.95)(sync_lag_hist_ms, after) / 1000, NULL)
                   AS lag_after
        FROM health_rows
        GROUP BY change_id
    ),
    -- The affected artisans, from the rollup rows' keys only (no latency states read).  A scalar subquery
    -- is evaluated once per query; the CTE below unpacks it wherever it is used.
    (SELECT groupUniqArray((change_id, artisan))
     FROM (SELECT change_id, artisan FROM health_rows
           UNION ALL
           SELECT change_id, scope AS artisan FROM changes WHERE scope != '*')) AS affected_pairs,
    affected AS (
        SELECT pair.1 AS change_id, pair.2 AS artisan FROM (SELECT arrayJoin(affected_pairs) AS pair)
    ),
    -- The span of the windows of changes with affected artisans: KPI rows outside it cannot count.
    (SELECT (min(b_start), max(a_end)) FROM changes WHERE change_id IN (SELECT change_id FROM affected))
        AS kpi_span,
    order_buyers AS (
        SELECT a.change_id AS change_id, o.ts >= ch.ts AS after, o.artisan_id AS artisan, o.buyer_id AS buyer,
               count() AS n, sum(toFloat64(o.amount)) AS revenue
        FROM (
            SELECT artisan_id, buyer_id, ts, amount
            FROM kpi_orders FINAL
            WHERE ts >= kpi_span.1 AND ts < kpi_span.2 AND artisan_id IN (SELECT artisan FROM affected)
        ) AS o
        INNER JOIN affected AS a ON a.artisan = o.artisan_id
        INNER JOIN changes AS ch ON ch.change_id = a.change_id
        WHERE o.ts >= ch.b_start AND o.ts < ch.a_end
        GROUP BY change_id, after, artisan, buyer
    ),
    kpis AS (
        SELECT change_id,
               countIf(NOT after) AS buyers_before,
               countIf(after) AS buyers_after,
               countIf(NOT after AND n >= 2) / nullIf(buyers_before, 0) AS repeat_before,
               countIf(after AND n >= 2) / nullIf(buyers_after, 0) AS repeat_after,
               sumIf(n, NOT after) AS orders_before,
               sumIf(n, after) AS orders_after,
               sumIf(revenue, NOT after) / nullIf(orders_before, 0) AS aov_before,
               sumIf(revenue, after) / nullIf(orders_after, 0) AS aov_after
        FROM order_buyers
        GROUP BY change_id
    ),
    cart_rows AS (
        SELECT a.change_id AS change_id, c.created_at >= ch.ts AS after, c.purchased AS purchased
        FROM (
            SELECT cart_id, any(artisan_id) AS c_artisan, minIf(ts, event = 'created') AS created_at,
                   countIf(event = 'created') > 0 AS has_created, countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= kpi_span.1 - INTERVAL 1 DAY AND ts < (SELECT max(a_end) FROM changes) + INTERVAL 1 DAY
              AND artisan_id IN (SELECT artisan FROM affected)
            GROUP BY cart_id
        ) AS c
        INNER JOIN affected AS a ON a.artisan = c.c_artisan
        INNER JOIN changes AS ch ON ch.change_id = a.change_id
        WHERE c.has_created AND c.created_at >= ch.b_start AND c.created_at < ch.a_end
    ),
    carts AS (
        SELECT change_id,
               countIf(NOT after) AS carts_before,
               countIf(after) AS carts_after,
               1 - countIf(NOT after AND purchased) / nullIf(carts_before, 0) AS abandonment_before,
               1 - countIf(after AND purchased) / nullIf(carts_after, 0) AS abandonment_after
        FROM cart_rows
        GROUP BY change_id
    )
SELECT
    ch.change_id AS change_id,
    ch.partner_id AS partner,
    ch.scope AS artisan_scope,
    ch.kind AS kind,
    ch.description AS description,
    ch.ts AS ts,
    {window_days:UInt16} AS window_days,
    toUInt8(ch.a_end <= now64(3)) AS after_complete,
    h.artisans AS artisans,
    h.calls_before AS calls_before,
    h.calls_after AS calls_after,
    round(h.error_rate_before, 5) AS error_rate_before,
    round(h.error_rate_after, 5) AS error_rate_after,
    round(error_rate_after - error_rate_before, 5) AS error_rate_delta,
    round(h.p95_before, 1) AS p95_ms_before,
    round(h.p95_after, 1) AS p95_ms_after,
    round(h.lag_before, 3) AS sync_lag_p95_s_before,
    round(h.lag_after, 3) AS sync_lag_p95_s_after,
    k.buyers_before AS buyers_before,
    k.buyers_after AS buyers_after,
    round(k.repeat_before, 4) AS repeat_purchase_before,
    round(k.repeat_after, 4) AS repeat_purchase_after,
    round(repeat_purchase_after - repeat_purchase_before, 4) AS repeat_purchase_delta,
    c.carts_before AS carts_before,
    c.carts_after AS carts_after,
    round(c.abandonment_before, 4) AS cart_abandonment_before,
    round(c.abandonment_after, 4) AS cart_abandonment_after,
    round(cart_abandonment_after - cart_abandonment_before, 4) AS cart_abandonment_delta,
    round(k.aov_before, 2) AS aov_before,
    round(k.aov_after, 2) AS aov_after
FROM changes AS ch
LEFT JOIN health AS h ON h.change_id = ch.change_id
LEFT JOIN kpis AS k ON k.change_id = ch.change_id
LEFT JOIN carts AS c ON c.change_id = ch.change_id
ORDER BY ch.ts DESC, ch.change_id
