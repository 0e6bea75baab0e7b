-- name: retention_kpis
-- answers: Retention KPIs per artisan and period (consecutive periods ending at `end`, most recent first):
--   churn rate, repeat purchase rate, cart abandonment rate, AOV, purchase frequency, LTV, survey
--   response rate and NPS.  Buyers are counted per artisan (a buyer of two artisans counts for each).
-- formula: churn rate = customers lost in the period ÷ customers at its start; a customer at the start
--   ordered within the inactivity window before it (inactivity_days); lost = no order since and the
--   inactivity window ran out before the period's end (last order < period end − inactivity_days)
-- formula: repeat purchase rate = buyers with 2+ orders in the period ÷ buyers with 1+ orders
-- formula: cart abandonment rate = 1 − carts purchased ÷ carts created (carts by creation time)
-- formula: AOV = revenue ÷ orders; purchase frequency = orders ÷ buyers
-- formula: LTV = AOV × purchase frequency × expected lifespan (periods) × margin; expected lifespan =
--   lifespan_periods when > 0, else 1 ÷ churn rate (NULL when churn is 0)
-- formula: survey response rate = surveys answered ÷ surveys delivered (all kinds, status 'delivered';
--   surveys merely 'sent' are in neither count); NPS = % promoters (9–10) − % detractors (0–6) among
--   the answered surveys whose kind is in nps_kinds (the 0–10 recommend scale), −100 … +100
-- note: a survey counts in the period holding its delivery time (ts), whenever its answer was recorded
--   (answered_at); an answer recorded after the query ran counts on the next run.
-- note: amounts are added as stored: filter one currency with `currency` when orders mix currencies.
-- note: KPI tables are read with FINAL, so re-imported rows count once.
-- param: end DateTime64(3, 'UTC') = now       -- end of the most recent period (exclusive)
-- param: periods UInt16 = 3                   -- number of periods
-- param: period_days UInt16 = 30              -- length of a period
-- param: inactivity_days UInt16 = 90          -- a customer is lost after this long without an order
-- param: lifespan_periods Float64 = 0         -- expected customer lifespan for LTV; 0 = 1 ÷ churn rate
-- param: margin Float64 = 1                   -- gross margin applied to LTV (1 = revenue LTV)
-- param: artisan String =                     -- only this artisan (empty = all)
-- param: currency String =                    -- only orders in this currency (empty = all)
-- param: nps_kinds Array(String) = nps        -- survey kinds answered on the 0–10 recommend scale
WITH
    {end:DateTime64(3, 'UTC')} AS w_end,
    toIntervalDay({period_days:UInt16}) AS p_len,
    toIntervalDay({inactivity_days:UInt16}) AS idle,
    periods AS (
        SELECT toUInt16(number) AS period,
               w_end - toIntervalDay((number + 1) * {period_days:UInt16}) AS ps,
               w_end - toIntervalDay(number * {period_days:UInt16}) AS pe
        FROM numbers({periods:UInt16})
    ),
    orders AS (
        SELECT artisan_id, buyer_id, ts, amount
        FROM kpi_orders FINAL
        WHERE ts < w_end
          AND ts >= w_end - toIntervalDay({periods:UInt16} * {period_days:UInt16} + {inactivity_days:UInt16})
          AND ({artisan:String} = '' OR artisan_id = {artisan:String})
          AND ({currency:String} = '' OR currency = {currency:String})
    ),
    -- The period of a time t < w_end by arithmetic instead of a join with every period: t is in period k
    -- when k·len < w_end − t ≤ (k + 1)·len (milliseconds; a day is 86,400 s in UTC).
    toInt64({period_days:UInt16}) * 86400000 AS len_ms,
    t -> intDiv(toUnixTimestamp64Milli(w_end) - toUnixTimestamp64Milli(t) - 1, len_ms) AS period_of,
    -- Each artisan × buyer's orders grouped once, then per period from the arrays (a pair counts in a
    -- period when it ordered before the period's end, as a buyer or as a customer who may be lost).
    per_pair AS (
        SELECT artisan_id, buyer_id, groupArray(ts) AS tss, groupArray(amount) AS amounts, min(ts) AS first_ts
        FROM orders
        GROUP BY artisan_id, buyer_id
    ),
    per_buyer AS (
        SELECT period, pe AS p_end, artisan_id, buyer_id,
               arrayCount(x -> x >= ps AND x < pe, tss) AS n_in,
               arraySum((x, a) -> if(x >= ps AND x < pe, a, 0), tss, amounts) AS revenue_in,
               arrayExists(x -> x < ps AND x >= ps - idle, tss) AS at_start,
               arrayMax(arrayFilter(x -> x < ps, tss)) AS last_before
        FROM per_pair CROSS JOIN periods
        WHERE first_ts < pe
    ),
    buyers AS (
        SELECT period, artisan_id,
               countIf(at_start) AS customers_at_start,
               countIf(at_start AND n_in = 0 AND last_before < p_end - idle) AS customers_lost,
               countIf(n_in > 0) AS n_buyers,
               countIf(n_in >= 2) AS n_repeat,
               sum(n_in) AS n_orders,
               sum(revenue_in) AS revenue
        FROM per_buyer
        GROUP BY period, artisan_id
    ),
    carts AS (
        SELECT toUInt16(period_of(created)) AS period, c_artisan AS artisan_id,
               count() AS carts_created,
               countIf(purchased) AS carts_purchased
        FROM (
            SELECT cart_id, any(artisan_id) AS c_artisan,
                   minIf(ts, event = 'created') AS created, countIf(event = 'purchased') > 0 AS purchased,
                   countIf(event = 'created') > 0 AS has_created
            FROM kpi_cart_events FINAL
            WHERE ts >= w_end - toIntervalDay({periods:UInt16} * {period_days:UInt16}) - INTERVAL 1 DAY
              AND ({artisan:String} = '' OR artisan_id = {artisan:String})
            GROUP BY cart_id
        )
        WHERE has_created AND created >= w_end - toIntervalDay({periods:UInt16} * {period_days:UInt16})
          AND created < w_end
        GROUP BY period, c_artisan
    ),
    surveys AS (
        SELECT toUInt16(period_of(ts)) AS period, artisan_id,
               countIf(status = 'delivered') AS delivered,
               countIf(status = 'delivered' AND answered) AS answered_n,
               countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score IS NOT NULL) AS nps_n,
               countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score >= 9) AS promoters,
               countIf(has({nps_kinds:Array(String)}, kind) AND answered AND score <= 6) AS detractors
        FROM kpi_survey_responses FINAL
        WHERE ts >= w_end - toIntervalDay({periods:UInt16} * {period_days:UInt16}) AND ts < w_end
          AND ({artisan:String} = '' OR artisan_id = {artisan:String})
        GROUP BY period, artisan_id
    ),
    -- One row per period × artisan with every count: the three parts stacked and summed (each part is
    -- computed once; joining them to a key list would evaluate each twice).
    merged AS (
        SELECT period, artisan_id,
               sum(m_at_start) AS customers_at_start, sum(m_lost) AS customers_lost,
               sum(m_buyers) AS n_buyers, sum(m_repeat) AS n_repeat, sum(m_orders) AS n_orders,
               sum(m_revenue) AS revenue, sum(m_carts) AS carts_created, sum(m_bought) AS carts_purchased,
               sum(m_delivered) AS delivered, sum(m_answered) AS answered_n, sum(m_nps) AS nps_n,
               sum(m_promoters) AS promoters, sum(m_detractors) AS detractors
        FROM (
            SELECT period, artisan_id, customers_at_start AS m_at_start, customers_lost AS m_lost,
                   n_buyers AS m_buyers, n_repeat AS m_repeat, n_orders AS m_orders, revenue AS m_revenue,
                   0 AS m_carts, 0 AS m_bought, 0 AS m_delivered, 0 AS m_answered, 0 AS m_nps,
                   0 AS m_promoters, 0 AS m_detractors
            FROM buyers
            UNION ALL
            SELECT period, artisan_id, 0, 0, 0, 0, 0, 0, carts_created, carts_purchased, 0, 0, 0, 0, 0
            FROM carts
            UNION ALL
            SELECT period, artisan_id, 0, 0, 0, 0, 0, 0, 0, 0, delivered, answered_n, nps_n, promoters, detractors
            FROM surveys
        )
        GROUP BY period, artisan_id
    )
SELECT
    m.artisan_id AS artisan,
    m.period AS period,
    p.ps AS period_start,
    p.pe AS period_end,
    m.customers_at_start AS customers_at_start,
    m.customers_lost AS customers_lost,
    if(m.customers_at_start = 0, NULL, round(m.customers_lost / m.customers_at_start, 4)) AS churn_rate,
    m.n_buyers AS buyers,
    m.n_repeat AS repeat_buyers,
    if(m.n_buyers = 0, NULL, round(m.n_repeat / m.n_buyers, 4)) AS repeat_purchase_rate,
    m.carts_created AS carts_created,
    m.carts_purchased AS carts_purchased,
    if(m.carts_created = 0, NULL, round(1 - m.carts_purchased / m.carts_created, 4)) AS cart_abandonment_rate,
    m.n_orders AS orders,
    toFloat64(m.revenue) AS revenue,
    if(m.n_orders = 0, NULL, round(toFloat64(m.revenue) / m.n_orders, 2)) AS aov,
    if(m.n_buyers = 0, NULL, round(m.n_orders / m.n_buyers, 4)) AS purchase_frequency,
    multiIf({lifespan_periods:Float64} > 0, {lifespan_periods:Float64},
            churn_rate > 0, 1 / churn_rate, NULL) AS expected_lifespan_periods,
    round(aov * purchase_frequency * expected_lifespan_periods * {margin:Float64}, 2) AS ltv,
    m.delivered AS surveys_delivered,
    m.answered_n AS surveys_answered,
    if(m.delivered = 0, NULL, round(m.answered_n / m.delivered, 4)) AS survey_response_rate,
    m.nps_n AS nps_responses,
    if(m.nps_n = 0, NULL, round(100 * (m.promoters - m.detractors) / m.nps_n, 1)) AS nps
FROM merged AS m
INNER JOIN periods AS p ON p.period = m.period
ORDER BY artisan, period
