-- name: integration_change_did
-- answers: Did an integration change move its artisans' KPIs, beyond what moved for everyone?  Per change
--   and KPI (repeat purchase, cart abandonment, error rate), and pooled per change kind: the
--   difference-in-differences estimate against comparable unchanged artisans over the same calendar
--   windows, with a 95 % bootstrap interval, the artisans and orders behind it, and a pre-period trend
--   check that says whether the comparison is fair.
-- formula: windows around a change at ts, each window_days long: pre = [ts − 2w, ts − w),
--   before = [ts − w, ts), after = [ts, ts + w)
-- formula: treated = the change's artisan, or for '*' every artisan that called through the change's
--   partner (loomgate_calls_1d) in the three windows.  control = artisans no real change touched in the
--   three windows (any change whose ts falls in [ts − 2w, ts + w), placebo changes excluded); of the same
--   partner when at least min_control such artisans exist ('same partner'), else of every partner
--   ('other partners').  Both groups keep only artisans with KPI events before and after (a balanced panel).
-- formula: group rate in a window = Σ numerator ÷ Σ denominator over the group's artisans (pooled);
--   repeat purchase = buyers with 2+ orders ÷ buyers with 1+ (per artisan × buyer, in each window);
--   cart abandonment = 1 − carts purchased ÷ carts created; error rate = errors ÷ calls (loomgate_calls_1m)
-- formula: naive_delta = treated_after − treated_before;
--   did = (treated_after − treated_before) − (control_after − control_before)
-- formula: pre_trend = (treated_before − treated_pre) − (control_before − control_pre), over the artisans
--   with events in both of those windows; pre_trend_ok = its 95 % interval contains 0 (parallel trends
--   before the change: the control is a fair comparison).  pre_trend is NULL when the pre window has no data.
-- formula: 95 % interval = 2.5th and 97.5th percentiles of the estimate over `replicates` Poisson
--   bootstrap resamples of artisans: each artisan gets weight ~ Poisson(1) (from a hash of the artisan id
--   and the replicate number, so reruns agree), the same weight in every window, KPI and change (a
--   resample of whole artisans keeps each artisan's windows together).
-- formula: pooled per kind (level = 'kind', change_id = ''): mean of the changes' estimates weighted by
--   their treated artisans, in every replicate; placebo changes are pooled apart from real ones.
-- note: placebo = 1 marks a change that did not happen (kpi_integration_changes.placebo): its estimate
--   should be indistinguishable from 0; one whose interval excludes 0 says the method finds effects that
--   are not there.  after_complete = 0 when the after window reaches past `now`.
-- note: KPI tables read with FINAL; error rate from the per-minute rollup (calls and errors only).
--   integration_change_impact gives the plain before/after levels and latencies of the same changes.
-- param: window_days UInt16 = 30   -- length of each window
-- param: change_id String =        -- only this change (empty = all)
-- param: partner String =          -- only changes of this partner (empty = all)
-- param: min_control UInt32 = 10   -- fewer unchanged same-partner artisans: control from every partner
-- param: replicates UInt16 = 400   -- bootstrap resamples (0 = estimates without intervals)
WITH
    toIntervalDay({window_days:UInt16}) AS win,
    changes AS (
        SELECT change_id, partner_id, artisan_id AS scope, kind, placebo, ts,
               ts - win - win AS p_start, ts - win AS b_start, ts + win AS a_end
        FROM kpi_integration_changes FINAL
        WHERE ({change_id:String} = '' OR change_id = {change_id:String})
          AND ({partner:String} = '' OR partner_id = {partner:String})
    ),
    (SELECT (min(p_start), max(a_end)) FROM changes) AS span,
    (SELECT groupArray((change_id, p_start, b_start, ts, a_end)) FROM changes) AS change_list,
    -- window of time t for change c: 0 pre, 1 before, 2 after
    (t, c) -> multiIf(t < c.3, 0, t < c.4, 1, 2) AS window_of,
    -- which partners each artisan called through, and over which days
    membership AS (
        SELECT partner, artisan, min(day) AS first_day, max(day) AS last_day
        FROM loomgate_calls_1d
        WHERE day >= toDate(span.1) AND day <= toDate(span.2) AND artisan != ''
        GROUP BY partner, artisan
    ),
    universe AS (
        SELECT artisan, groupUniqArrayIf(partner, partner != '') AS partners
        FROM (SELECT artisan, partner FROM membership
              UNION ALL SELECT artisan_id AS artisan, '' AS partner FROM kpi_artisans FINAL)
        GROUP BY artisan
    ),
    treated AS (
        SELECT c.change_id AS change_id, m.artisan AS artisan
        FROM changes AS c INNER JOIN membership AS m ON m.partner = c.partner_id
        WHERE c.scope = '*' AND m.first_day <= toDate(c.a_end) AND m.last_day >= toDate(c.p_start)
        UNION DISTINCT
        SELECT change_id, scope AS artisan FROM changes WHERE scope != '*'
    ),
    -- real changes inside each analysed change's windows: their artisans cannot be controls
    overlapping AS (
        SELECT c.change_id AS change_id, o.partner_id AS o_partner, o.artisan_id AS o_scope
        FROM changes AS c CROSS JOIN (SELECT partner_id, artisan_id, ts FROM kpi_integration_changes FINAL
                                      WHERE NOT placebo) AS o
        WHERE o.ts >= c.p_start AND o.ts < c.a_end
    ),
    changed AS (
        SELECT ov.change_id AS change_id, m.artisan AS artisan
        FROM overlapping AS ov INNER JOIN membership AS m ON m.partner = ov.o_partner
        WHERE ov.o_scope = '*'
        UNION DISTINCT
        SELECT change_id, o_scope AS artisan FROM overlapping WHERE o_scope != '*'
        UNION DISTINCT
        SELECT change_id, artisan FROM treated
    ),
    candidates AS (
        SELECT c.change_id AS change_id, u.artisan AS artisan, has(u.partners, c.partner_id) AS same_partner
        FROM changes AS c CROSS JOIN universe AS u
        WHERE (c.change_id, u.artisan) NOT IN (SELECT change_id, artisan FROM changed)
    ),
    control_choice AS (
        SELECT change_id, countIf(same_partner) >= {min_control:UInt32} AS use_same
        FROM candidates GROUP BY change_id
    ),
    units AS (
        SELECT change_id, artisan, 'treated' AS grp FROM treated
        UNION ALL
        SELECT ca.change_id AS change_id, ca.artisan AS artisan, 'control' AS grp
        FROM candidates AS ca INNER JOIN control_choice AS cc ON cc.change_id = ca.change_id
        WHERE ca.same_partner OR NOT cc.use_same
    ),
    -- KPI numerators and denominators per change × window × artisan
    order_stats AS (
        SELECT change_id, w, artisan, 'repeat_purchase' AS kpi, toFloat64(countIf(n >= 2)) AS num,
               toFloat64(count()) AS den, sum(n) AS orders
        FROM (
            SELECT ch.1 AS change_id, window_of(ts, ch) AS w, artisan_id AS artisan, buyer_id, count() AS n
            FROM (SELECT artisan_id, buyer_id, ts FROM kpi_orders FINAL WHERE ts >= span.1 AND ts < span.2)
            ARRAY JOIN arrayFilter(c -> ts >= c.2 AND ts < c.5, change_list) AS ch
            GROUP BY change_id, w, artisan, buyer_id
        )
        GROUP BY change_id, w, artisan
    ),
    cart_stats AS (
        SELECT ch.1 AS change_id, window_of(created_at, ch) AS w, c_artisan AS artisan,
               'cart_abandonment' AS kpi, toFloat64(countIf(NOT purchased)) AS num, toFloat64(count()) AS den,
               toUInt64(0) AS orders
        FROM (
            SELECT cart_id, any(artisan_id) AS c_artisan, minIf(ts, event = 'created') AS created_at,
                   countIf(event = 'created') > 0 AS has_created, countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= span.1 - INTERVAL 1 DAY AND ts < span.2 + INTERVAL 1 DAY
            GROUP BY cart_id
        )
        ARRAY JOIN arrayFilter(c -> created_at >= c.2 AND created_at < c.5, change_list) AS ch
        WHERE has_created
        GROUP BY change_id, w, artisan
    ),
    call_stats AS (
        SELECT ch.1 AS change_id, window_of(minute, ch) AS w, artisan, 'error_rate' AS kpi,
               toFloat64(sum(errors)) AS num, toFloat64(sum(calls)) AS den, toUInt64(0) AS orders
        FROM loomgate_calls_1m
        ARRAY JOIN arrayFilter(c -> minute >= c.2 AND minute < c.5, change_list) AS ch
        WHERE toStartOfHour(minute) >= toStartOfHour(span.1) AND minute < span.2 AND artisan != ''
        GROUP BY change_id, w, artisan
    ),
    stats AS (
        SELECT * FROM order_stats UNION ALL SELECT * FROM cart_stats UNION ALL SELECT * FROM call_stats
    ),
    unit_orders AS (
        SELECT change_id, artisan, sumIf(orders, w >= 1) AS orders FROM order_stats GROUP BY change_id, artisan
    ),
    -- one row per change × KPI × group × artisan with its three windows (a balanced panel)
    panel AS (
        SELECT u.change_id AS change_id, s.kpi AS kpi, u.grp AS grp, u.artisan AS artisan,
               sumIf(s.num, s.w = 0) AS n0, sumIf(s.den, s.w = 0) AS d0,
               sumIf(s.num, s.w = 1) AS n1, sumIf(s.den, s.w = 1) AS d1,
               sumIf(s.num, s.w = 2) AS n2, sumIf(s.den, s.w = 2) AS d2,
               any(uo.orders) AS orders
        FROM units AS u
        INNER JOIN stats AS s ON s.change_id = u.change_id AND s.artisan = u.artisan
        LEFT JOIN unit_orders AS uo ON uo.change_id = u.change_id AND uo.artisan = u.artisan
        GROUP BY change_id, kpi, grp, artisan
        HAVING d1 > 0 AND d2 > 0
    ),
    -- Replicate 0 is the estimate itself (every weight 1); 1..replicates are the bootstrap resamples.
    -- Each CTE below is read once: ClickHouse inlines a CTE wherever it is named.
    reps AS (
        SELECT change_id, kpi, b,
               sumIf(w * n1, grp = 'treated') / sumIf(w * d1, grp = 'treated') AS t1,
               sumIf(w * n2, grp = 'treated') / sumIf(w * d2, grp = 'treated') AS t2,
               sumIf(w * n1, grp = 'control') / sumIf(w * d1, grp = 'control') AS c1,
               sumIf(w * n2, grp = 'control') / sumIf(w * d2, grp = 'control') AS c2,
               sumIf(w * n0, grp = 'treated' AND d0 > 0) / sumIf(w * d0, grp = 'treated' AND d0 > 0) AS t0p,
               sumIf(w * n1, grp = 'treated' AND d0 > 0) / sumIf(w * d1, grp = 'treated' AND d0 > 0) AS t1p,
               sumIf(w * n0, grp = 'control' AND d0 > 0) / sumIf(w * d0, grp = 'control' AND d0 > 0) AS c0p,
               sumIf(w * n1, grp = 'control' AND d0 > 0) / sumIf(w * d1, grp = 'control' AND d0 > 0) AS c1p,
               (t2 - t1) - (c2 - c1) AS did,
               (t1p - t0p) - (c1p - c0p) AS pre,
               countIf(grp = 'treated') AS n_treated, countIf(grp = 'control') AS n_control,
               sumIf(orders, grp = 'treated') AS t_orders, sumIf(orders, grp = 'control') AS c_orders,
               sum(d1 + d2) AS events
        FROM (
            SELECT change_id, kpi, grp, n0, d0, n1, d1, n2, d2, orders, b,
                   -- Poisson(1) weight by inverse CDF of a uniform drawn from the artisan id and replicate
                   if(b = 0, 1.0,
                      multiIf(u < 0.367879, 0.0, u < 0.735759, 1.0, u < 0.919699, 2.0, u < 0.981012, 3.0,
                              u < 0.996340, 4.0, u < 0.999406, 5.0, 6.0)) AS w
            FROM panel
            ARRAY JOIN range(toUInt32({replicates:UInt16}) + 1) AS b
            ARRAY JOIN [(cityHash64(artisan, b) % 1000000) / 1000000] AS u
        )
        GROUP BY change_id, kpi, b
    ),
    -- every replicate at both levels: the change itself, and its kind (weighted by treated artisans)
    level_reps AS (
        SELECT lv.1 AS level, lv.2 AS change_id, lv.3 AS kind, lv.4 AS placebo, r.kpi AS kpi, r.b AS b,
               sum(r.did * r.n_treated) / sum(r.n_treated) AS did,
               sumIf(r.pre * r.n_treated, isFinite(r.pre)) / sumIf(r.n_treated, isFinite(r.pre)) AS pre,
               any(r.t1) AS t1, any(r.t2) AS t2, any(r.c1) AS c1, any(r.c2) AS c2,
               sum(r.n_treated) AS n_treated, sum(r.n_control) AS n_control, sum(r.t_orders) AS t_orders,
               sum(r.c_orders) AS c_orders, sum(r.events) AS events, count() AS n_changes
        FROM reps AS r
        INNER JOIN changes AS c ON c.change_id = r.change_id
        ARRAY JOIN [('change', c.change_id, c.kind, c.placebo), ('kind', '', c.kind, c.placebo)] AS lv
        WHERE isFinite(r.did)
        GROUP BY level, change_id, kind, placebo, kpi, b
    ),
    summary AS (
        SELECT level, change_id, kind, placebo, kpi,
               anyIf(t1, b = 0) AS treated_before, anyIf(t2, b = 0) AS treated_after,
               anyIf(c1, b = 0) AS control_before, anyIf(c2, b = 0) AS control_after,
               anyIf(did, b = 0) AS est, quantileExactIf(0.025)(did, b > 0) AS est_lo,
               quantileExactIf(0.975)(did, b > 0) AS est_hi,
               anyIf(pre, b = 0) AS pre_est, quantileExactIf(0.025)(pre, b > 0 AND isFinite(pre)) AS pre_lo,
               quantileExactIf(0.975)(pre, b > 0 AND isFinite(pre)) AS pre_hi,
               anyIf(n_treated, b = 0) AS treated_artisans, anyIf(n_control, b = 0) AS control_artisans,
               anyIf(t_orders, b = 0) AS treated_orders, anyIf(c_orders, b = 0) AS control_orders,
               anyIf(events, b = 0) AS events, anyIf(n_changes, b = 0) AS n_changes
        FROM level_reps
        GROUP BY level, change_id, kind, placebo, kpi
    ),
    -- every change and every kind gets its rows, with or without data
    skeleton AS (
        SELECT 'change' AS level, c.change_id AS change_id, c.kind AS kind, c.placebo AS placebo,
               c.partner_id AS partner, c.scope AS artisan_scope, toNullable(c.ts) AS ts,
               toUInt8(c.a_end <= now64(3)) AS after_complete,
               if(cc.use_same, 'same partner', 'other partners') AS control
        FROM changes AS c LEFT JOIN control_choice AS cc ON cc.change_id = c.change_id
        UNION ALL
        SELECT 'kind', '', kind, placebo, '', '', NULL, toUInt8(max(a_end) <= now64(3)),
               concat(toString(count()), ' change(s), each against its own control')
        FROM changes GROUP BY kind, placebo
    )
SELECT
    k.level AS level, k.change_id AS change_id, k.kind AS kind, k.placebo AS placebo, k.partner AS partner,
    k.artisan_scope AS artisan_scope, k.ts AS ts, {window_days:UInt16} AS window_days,
    k.after_complete AS after_complete, m.kpi AS kpi, k.control AS control,
    ifNull(s.treated_artisans, 0) AS treated_artisans, ifNull(s.control_artisans, 0) AS control_artisans,
    ifNull(s.treated_orders, 0) AS treated_orders, ifNull(s.control_orders, 0) AS control_orders,
    ifNull(s.events, 0) AS events,
    if(k.level = 'change', round(s.treated_before, 4), NULL) AS treated_before,
    if(k.level = 'change', round(s.treated_after, 4), NULL) AS treated_after,
    if(k.level = 'change', round(s.control_before, 4), NULL) AS control_before,
    if(k.level = 'change', round(s.control_after, 4), NULL) AS control_after,
    if(k.level = 'change', round(s.treated_after - s.treated_before, 4), NULL) AS naive_delta,
    round(s.est, 4) AS did,
    if({replicates:UInt16} = 0, NULL, round(s.est_lo, 4)) AS did_ci_low,
    if({replicates:UInt16} = 0, NULL, round(s.est_hi, 4)) AS did_ci_high,
    if(isFinite(s.pre_est), round(s.pre_est, 4), NULL) AS pre_trend,
    if({replicates:UInt16} = 0 OR NOT isFinite(s.pre_est), NULL, round(s.pre_lo, 4)) AS pre_trend_ci_low,
    if({replicates:UInt16} = 0 OR NOT isFinite(s.pre_est), NULL, round(s.pre_hi, 4)) AS pre_trend_ci_high,
    if(pre_trend_ci_low IS NULL, NULL, toUInt8(pre_trend_ci_low <= 0 AND 0 <= pre_trend_ci_high))
        AS pre_trend_ok,
    multiIf(s.est IS NULL, 'no data',
            did_ci_low IS NULL, 'no interval (replicates = 0)',
            did_ci_low > 0 OR did_ci_high < 0, concat(if(s.est > 0, 'raised ', 'lowered '), m.kpi),
            'no effect shown') AS finding
FROM skeleton AS k
CROSS JOIN (SELECT arrayJoin(['repeat_purchase', 'cart_abandonment', 'error_rate']) AS kpi) AS m
LEFT JOIN summary AS s ON s.level = k.level AND s.change_id = k.change_id AND s.kind = k.kind
    AND s.placebo = k.placebo AND s.kpi = m.kpi
ORDER BY level, ts DESC, change_id, kind, placebo, kpi
SETTINGS join_use_nulls = 1
