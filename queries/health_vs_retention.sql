-- name: health_vs_retention
-- answers: Do integration problems cost buyers?  Per artisan, health metrics over a window (error rate,
--   p50 latency, sync-lag p95) joined with its KPIs in the same window (cart abandonment, repeat purchase,
--   survey response rate, NPS, AOV); for every health metric × KPI pair of the grid (3 × 5 = 15 tests):
--   Pearson r across artisans with a 95 % interval, p-value and Benjamini–Hochberg q-value, and the KPI in
--   the worst quartile of the metric (highest values) vs the best quartile (lowest), with the difference.
-- formula: KPIs as in retention_kpis (cart abandonment = 1 − purchased ÷ created; repeat purchase = buyers
--   with 2+ orders ÷ buyers with 1+; response rate = answered ÷ delivered, surveys with status 'delivered';
--   NPS = %9–10 − %0–6 over the answered surveys whose kind is in nps_kinds; AOV = revenue ÷ orders)
-- formula: latency p50 (ms) and sync-lag p95 (s) per artisan from the merged
--   quantileBFloat16 states of the rollups (schema 014), which merge exactly: with n samples, the result
--   is the sample at rank ⌈q·n⌉ with its mantissa cut to 8 significant bits (at most 0.79 % below that
--   sample), the same whatever parts ClickHouse has merged
--   (so the quartile bounds and r are identical on every run over the same calls)
-- formula: r = corr(metric, KPI) over artisans with at least min_events KPI events (carts, buyers, surveys,
--   NPS answers or orders) and at least min_calls calls
-- formula: Fisher z: z_r = atanh(r), se = 1 ÷ √(n − 3); 95 % interval = tanh(z_r ± 1.96 se);
--   z = z_r ÷ se; p = erfc(|z| ÷ √2) (two-sided, normal approximation of atanh(r))
-- formula: Benjamini–Hochberg over the m pairs tested (n ≥ min_artisans): p-values sorted ascending
--   p(1) ≤ … ≤ p(m), q(i) = min over j ≥ i of p(j) × m ÷ j (capped at 1); a finding is q ≤ fdr, which keeps
--   the expected share of false findings among all findings at fdr or below
-- formula: quartile KPI = Σ numerator ÷ Σ denominator over the artisans of the quartile (pooled, not an
--   average of ratios); difference = worst − best
-- note: finding = 'no data' when no artisan has both the metric and the KPI (e.g. no NPS answers);
--   'too small' when 0 < n < min_artisans (not tested, not counted in m); 'no effect' when q > fdr; else
--   'higher <metric> goes with higher <KPI>' or '... lower <KPI>'.  tests = m.  Correlation is not
--   evidence of cause: see integration_change_did for changes against a control group.
-- note: a survey counts in the window holding its delivery time (ts), whenever its answer was recorded
--   (answered_at); answers recorded after the query ran count on the next run.
-- note: health from the per-day rollup loomgate_calls_1d for whole UTC days and loomgate_calls_1m for the
--   partial days at the window's edges; KPI tables read with FINAL.
-- param: start DateTime64(3, 'UTC') = -30d   -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now      -- end of the window (exclusive)
-- param: min_calls UInt32 = 20               -- artisans with fewer calls are left out
-- param: min_events UInt32 = 10              -- per artisan: fewer KPI events than this leave it out of that KPI
-- param: min_artisans UInt32 = 30            -- fewer artisans in a pair: 'too small', not tested
-- param: fdr Float64 = 0.05                  -- false discovery rate for the Benjamini–Hochberg findings
-- param: nps_kinds Array(String) = nps       -- survey kinds answered on the 0–10 recommend scale
WITH
    {start:DateTime64(3, 'UTC')} AS w_start,
    {end:DateTime64(3, 'UTC')} AS w_end,
    toStartOfMinute(w_start) AS m_start,
    -- whole days [d_first, d_last) from the per-day rollup; the minutes outside them from the per-minute one
    toStartOfDay(m_start - toIntervalMillisecond(1)) + toIntervalDay(1) AS d_first,
    toStartOfDay(toStartOfMinute(w_end - toIntervalMillisecond(1)) + toIntervalMinute(1)) AS d_last,
    health AS (
        SELECT artisan,
               sum(calls) AS n_calls,
               sum(errors) / n_calls AS error_rate,
               quantileBFloat16Merge(0.5)(latency_hist_ms) AS latency_p50_ms,
               if(sum(sync_lag_measured) > 0, quantileBFloat16Merge(0.95)(sync_lag_hist_ms) / 1000, NULL)
                   AS sync_lag_p95_s
        FROM (
            SELECT artisan, calls, errors, latency_hist_ms, sync_lag_measured, sync_lag_hist_ms
            FROM loomgate_calls_1d
            WHERE day >= toDate(d_first) AND day < toDate(d_last) AND artisan != ''
            UNION ALL
            SELECT artisan, calls, errors, latency_hist_ms, sync_lag_measured, sync_lag_hist_ms
            FROM loomgate_calls_1m
            -- stated on toStartOfHour(minute), the first sort key column, so the index skips the whole days
            WHERE toStartOfHour(minute) >= toStartOfHour(m_start) AND toStartOfHour(minute) < w_end
              AND (toStartOfHour(minute) < d_first OR toStartOfHour(minute) >= d_last)
              AND minute >= m_start AND minute < w_end AND artisan != ''
        )
        GROUP BY artisan
        HAVING n_calls >= {min_calls:UInt32}
    ),
    carts AS (
        SELECT c_artisan AS artisan, count() AS created, countIf(purchased) AS purchased
        FROM (
            SELECT cart_id, any(artisan_id) AS c_artisan, minIf(ts, event = 'created') AS created_at,
                   countIf(event = 'created') > 0 AS has_created, countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= w_start - INTERVAL 1 DAY AND ts < w_end + INTERVAL 1 DAY
            GROUP BY cart_id
        )
        WHERE has_created AND created_at >= w_start AND created_at < w_end
        GROUP BY c_artisan
    ),
    buyers AS (
        SELECT artisan_id AS artisan, count() AS n_buyers, countIf(n >= 2) AS n_repeat,
               sum(n) AS n_orders, sum(rev) AS revenue
        FROM (
            SELECT artisan_id, buyer_id, count() AS n, sum(toFloat64(amount)) AS rev
            FROM kpi_orders FINAL
            WHERE ts >= w_start AND ts < w_end
            GROUP BY artisan_id, buyer_id
        )
        GROUP BY artisan_id
    ),
    surveys AS (
        SELECT artisan_id AS artisan, countIf(status = 'delivered') AS delivered,
               countIf(status = 'delivered' AND answered) AS answered_n,
               countIf(is_nps AND answered AND score IS NOT NULL) AS nps_n,
               countIf(is_nps AND answered AND score >= 9) - countIf(is_nps AND answered AND score <= 6) AS nps_net
        FROM (SELECT *, has({nps_kinds:Array(String)}, kind) AS is_nps FROM kpi_survey_responses FINAL
              WHERE ts >= w_start AND ts < w_end)
        GROUP BY artisan_id
    ),
    pairs AS (
        SELECT h.artisan AS artisan, m.1 AS metric, m.2 AS x, k.1 AS kpi, k.2 AS num, k.3 AS den
        FROM health AS h
        LEFT JOIN carts AS c ON c.artisan = h.artisan
        LEFT JOIN buyers AS b ON b.artisan = h.artisan
        LEFT JOIN surveys AS s ON s.artisan = h.artisan
        ARRAY JOIN
            [('error_rate', toFloat64(h.error_rate)), ('latency_p50_ms', toFloat64(h.latency_p50_ms)),
             ('sync_lag_p95_s', toFloat64(ifNull(h.sync_lag_p95_s, nan)))] AS m
        ARRAY JOIN
            [('cart_abandonment', toFloat64(c.created - c.purchased), toFloat64(c.created)),
             ('repeat_purchase', toFloat64(b.n_repeat), toFloat64(b.n_buyers)),
             ('survey_response_rate', toFloat64(s.answered_n), toFloat64(s.delivered)),
             ('nps', toFloat64(100 * s.nps_net), toFloat64(s.nps_n)),
             ('aov', toFloat64(b.revenue), toFloat64(b.n_orders))] AS k
        WHERE NOT isNaN(x) AND den >= greatest({min_events:UInt32}, 1)
    ),
    ranked AS (
        SELECT *, num / den AS y,
               ntile(4) OVER (PARTITION BY metric, kpi ORDER BY x, artisan) AS quartile
        FROM pairs
    ),
    stats AS (
        SELECT metric, kpi, count() AS n, corr(x, y) AS r,
               sumIf(num, quartile = 4) / sumIf(den, quartile = 4) AS worst_kpi,
               sumIf(num, quartile = 1) / sumIf(den, quartile = 1) AS best_kpi,
               countIf(quartile = 4) AS n_worst, countIf(quartile = 1) AS n_best,
               minIf(x, quartile = 4) AS worst_from, maxIf(x, quartile = 1) AS best_to
        FROM ranked GROUP BY metric, kpi
    ),
    -- the whole grid, so that a pair without data says so instead of disappearing
    grid AS (
        SELECT metric, kpi
        FROM (SELECT arrayJoin(['error_rate', 'latency_p50_ms', 'sync_lag_p95_s']) AS metric) AS g1
        CROSS JOIN (SELECT arrayJoin(['cart_abandonment', 'repeat_purchase', 'survey_response_rate', 'nps',
                                      'aov']) AS kpi) AS g2
    ),
    tested AS (
        SELECT g.metric AS metric, g.kpi AS kpi, ifNull(s.n, 0) AS n, s.r AS r,
               s.worst_kpi AS worst_kpi, s.best_kpi AS best_kpi, ifNull(s.n_worst, 0) AS n_worst,
               ifNull(s.n_best, 0) AS n_best, s.worst_from AS worst_from, s.best_to AS best_to,
               n >= greatest({min_artisans:UInt32}, 4) AND isFinite(r) AS is_tested,
               atanh(least(greatest(r, -0.999999), 0.999999)) AS z_r,
               if(is_tested, 1 / sqrt(n - 3), NULL) AS se,
               if(is_tested, z_r / se, NULL) AS z,
               if(is_tested, erfc(abs(z) / sqrt(2)), NULL) AS p
        FROM grid AS g LEFT JOIN stats AS s ON s.metric = g.metric AND s.kpi = g.kpi
    ),
    ranked_p AS (
        SELECT *, countIf(is_tested) OVER () AS m,
               row_number() OVER (PARTITION BY is_tested ORDER BY p, metric, kpi) AS rank_p
        FROM tested
    ),
    bh AS (
        SELECT *, if(is_tested, least(1, min(p * m / rank_p) OVER (PARTITION BY is_tested ORDER BY rank_p DESC
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)), NULL) AS q
        FROM ranked_p
    )
SELECT
    metric,
    kpi,
    n,
    if(isFinite(r), round(r, 4), NULL) AS correlation,
    if(is_tested, round(tanh(z_r - 1.96 * se), 4), NULL) AS ci_low,
    if(is_tested, round(tanh(z_r + 1.96 * se), 4), NULL) AS ci_high,
    round(z, 2) AS z,
    p AS p_value,
    q AS q_value,
    m AS tests,
    {fdr:Float64} AS fdr,
    round(worst_kpi, 4) AS worst_quartile_kpi,
    round(best_kpi, 4) AS best_quartile_kpi,
    round(worst_quartile_kpi - best_quartile_kpi, 4) AS difference,
    n_worst,
    n_best,
    round(worst_from, 4) AS worst_quartile_from,
    round(best_to, 4) AS best_quartile_to,
    toUInt8(n < {min_artisans:UInt32}) AS small_sample,
    multiIf(n = 0, 'no data',
            small_sample, 'too small',
            NOT is_tested, 'no variation',
            q > {fdr:Float64}, 'no effect',
            r > 0, concat('higher ', metric, ' goes with higher ', kpi),
            concat('higher ', metric, ' goes with lower ', kpi)) AS finding
FROM bh
ORDER BY metric, kpi
SETTINGS join_use_nulls = 1
