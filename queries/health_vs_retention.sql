-- name: health_vs_retention
-- answers: Do integration problems cost buyers?  Per artisan, health metrics over a window (error rate,
--   p50 latency, sync-lag p95) joined with its KPIs in the same window (cart abandonment, repeat purchase,
--   survey response rate, NPS, AOV); for every health metric × KPI pair: Pearson correlation across
--   artisans with the sample size, and the KPI in the worst quartile of the metric (highest values) vs the
--   best quartile (lowest), with the difference; findings on samples too small to trust are flagged.
-- formula: KPIs as in retention_kpis (cart abandonment = 1 − purchased ÷ created; repeat purchase = buyers
--   with 2+ orders ÷ buyers with 1+; response rate = answered ÷ delivered; NPS = %9–10 − %0–6; AOV)
-- formula: r = corr(metric, KPI) over artisans with at least min_events KPI events (carts, buyers, surveys,
--   NPS answers or orders) and at least min_calls calls; z = atanh(r) × √(n − 3)
-- formula: quartile KPI = Σ numerator ÷ Σ denominator over the artisans of the quartile (pooled, not an
--   average of ratios); difference = worst − best
-- note: finding = 'too small' when n < min_artisans; 'no effect' when |z| < z_threshold; else 'higher
--   <metric> goes with higher <KPI>' or '... lower <KPI>'.  Correlation is not causation: see
--   integration_change_impact for before/after evidence.
-- note: health from the per-day rollup loomgate_calls_1d for whole UTC days and loomgate_calls_1m for the
--   partial days at the window's edges; KPI tables read with FINAL.
-- param: start DateTime64(3, 'UTC') = -30d   -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now      -- end of the window (exclusive)
-- param: min_calls UInt32 = 20               -- artisans with fewer calls are left out
-- param: min_events UInt32 = 10              -- per artisan: fewer KPI events than this leave it out of that KPI
-- param: min_artisans UInt32 = 30            -- fewer artisans in a pair: flagged 'too small'
-- param: z_threshold Float64 = 2.58          -- |z| needed to report an effect (2.58 ≈ p < 0.01, two-sided)
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
               quantileTDigestMerge(0.5)(latency_ms) AS latency_p50_ms,
               if(sum(sync_lag_measured) > 0, quantileTDigestMerge(0.95)(sync_lag_ms) / 1000, NULL)
                   AS sync_lag_p95_s
        FROM (
            SELECT artisan, calls, errors, latency_ms, sync_lag_measured, sync_lag_ms
            FROM loomgate_calls_1d
            WHERE day >= toDate(d_first) AND day < toDate(d_last) AND artisan != ''
            UNION ALL
            SELECT artisan, calls, errors, latency_ms, sync_lag_measured, sync_lag_ms
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
        SELECT artisan_id AS artisan, count() AS delivered, countIf(answered) AS answered_n,
               countIf(kind = 'nps' AND answered AND score IS NOT NULL) AS nps_n,
               countIf(kind = 'nps' AND answered AND score >= 9) - countIf(kind = 'nps' AND answered AND score <= 6)
                   AS nps_net
        FROM kpi_survey_responses FINAL
        WHERE ts >= w_start AND ts < w_end
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
    )
SELECT
    metric,
    kpi,
    count() AS n,
    round(corr(x, y), 4) AS correlation,
    round(atanh(least(greatest(corr(x, y), -0.999999), 0.999999)) * sqrt(greatest(n - 3, 0)), 2) AS z,
    round(sumIf(num, quartile = 4) / sumIf(den, quartile = 4), 4) AS worst_quartile_kpi,
    round(sumIf(num, quartile = 1) / sumIf(den, quartile = 1), 4) AS best_quartile_kpi,
    round(worst_quartile_kpi - best_quartile_kpi, 4) AS difference,
    countIf(quartile = 4) AS n_worst,
    countIf(quartile = 1) AS n_best,
    round(minIf(x, quartile = 4), 4) AS worst_quartile_from,
    round(maxIf(x, quartile = 1), 4) AS best_quartile_to,
    n < {min_artisans:UInt32} AS small_sample,
    multiIf(small_sample, 'too small',
            isNaN(z) OR abs(z) < {z_threshold:Float64}, 'no effect',
            z > 0, concat('higher ', metric, ' goes with higher ', kpi),
            concat('higher ', metric, ' goes with lower ', kpi)) AS finding
FROM ranked
GROUP BY metric, kpi
ORDER BY metric, kpi
