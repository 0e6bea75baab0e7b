-- name: channel_roi
-- answers: Which acquisition channels and promo codes pay off?  Per channel and promo code over a window:
--   carts, conversion, cart abandonment, orders, buyers, revenue, AOV, repeat purchase, post-purchase
--   survey response rate and average score, and ROI when the channel's spend is given.
-- formula: conversion = carts purchased ÷ carts created; cart abandonment = 1 − conversion
-- formula: AOV = revenue ÷ orders; repeat purchase = buyers with 2+ orders ÷ buyers with 1+
-- formula: post-purchase response rate = answered ÷ delivered post-purchase surveys of the channel's orders;
--   feedback score = mean answered score (0–10)
-- formula: ROI = (revenue − spend) ÷ spend, spend per channel from spend_channels / spend_amounts (all of
--   a channel's promo codes share its spend, so ROI is on the channel's '*' row only)
-- note: promo_code '*' = all of the channel's orders and carts; channel '*' = everything; promo_code '' =
--   no code.  KPI tables read with FINAL.
-- param: start DateTime64(3, 'UTC') = -30d    -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now       -- end of the window (exclusive)
-- param: currency String =                    -- only orders in this currency (empty = all)
-- param: spend_channels Array(String) =       -- channels with a known spend, e.g. paid_ads,influencer
-- param: spend_amounts Array(Float64) =       -- their spend in the window, same order
WITH
    {start:DateTime64(3, 'UTC')} AS w_start,
    {end:DateTime64(3, 'UTC')} AS w_end,
    carts AS (
        SELECT key.1 AS ch, key.2 AS pc, count() AS created, countIf(purchased) AS bought
        FROM (
            SELECT cart_id, any(channel) AS c_channel, any(promo_code) AS c_promo,
                   minIf(ts, event = 'created') AS created_at, countIf(event = 'created') > 0 AS has_created,
                   countIf(event = 'purchased') > 0 AS purchased
            FROM kpi_cart_events FINAL
            WHERE ts >= w_start - INTERVAL 1 DAY AND ts < w_end + INTERVAL 1 DAY
            GROUP BY cart_id
        )
        ARRAY JOIN [(c_channel, c_promo), (c_channel, '*'), ('*', '*')] AS key
        WHERE has_created AND created_at >= w_start AND created_at < w_end
        GROUP BY ch, pc
    ),
    -- Post-purchase surveys per order (any delivery time: they follow the order they ask about).
    feedback AS (
        SELECT order_id, count() AS delivered, countIf(answered) AS answered_n,
               sumIf(toFloat64(score), answered AND score IS NOT NULL) AS score_sum,
               countIf(answered AND score IS NOT NULL) AS score_n
        FROM kpi_survey_responses FINAL
        WHERE kind = 'post_purchase' AND order_id != ''
        GROUP BY order_id
    ),
    -- Orders read once: per channel / promo key × artisan × buyer (buyers and repeaters), with their surveys.
    pairs AS (
        SELECT key.1 AS ch, key.2 AS pc, artisan_id, buyer_id, count() AS n, sum(value) AS revenue,
               sum(delivered) AS delivered, sum(answered_n) AS answered_n,
               sum(score_sum) AS score_sum, sum(score_n) AS score_n
        FROM (
            SELECT o.channel AS channel, o.promo_code AS promo_code, o.artisan_id AS artisan_id,
                   o.buyer_id AS buyer_id, toFloat64(o.amount) AS value, f.delivered AS delivered,
                   f.answered_n AS answered_n, f.score_sum AS score_sum, f.score_n AS score_n
            FROM kpi_orders AS o FINAL
            LEFT JOIN feedback AS f ON f.order_id = o.order_id
            WHERE o.ts >= w_start AND o.ts < w_end AND ({currency:String} = '' OR o.currency = {currency:String})
        )
        ARRAY JOIN [(channel, promo_code), (channel, '*'), ('*', '*')] AS key
        GROUP BY ch, pc, artisan_id, buyer_id
    ),
    -- Carts and sales stacked and summed per key, so each is computed once.
    merged AS (
        SELECT ch, pc, sum(m_created) AS created, sum(m_bought) AS bought, sum(m_orders) AS n_orders,
               sum(m_revenue) AS revenue, sum(m_pairs) AS n_pairs, sum(m_repeat) AS repeat_pairs,
               sum(m_delivered) AS delivered, sum(m_answered) AS answered_n, sum(m_score_sum) AS score_sum,
               sum(m_score_n) AS score_n
        FROM (
            SELECT ch, pc, created AS m_created, bought AS m_bought, 0 AS m_orders, 0 AS m_revenue, 0 AS m_pairs,
                   0 AS m_repeat, 0 AS m_delivered, 0 AS m_answered, 0 AS m_score_sum, 0 AS m_score_n
            FROM carts
            UNION ALL
            SELECT ch, pc, 0, 0, sum(n), sum(revenue), count(), countIf(n >= 2), sum(delivered), sum(answered_n),
                   sum(score_sum), sum(score_n)
            FROM pairs
            GROUP BY ch, pc
        )
        GROUP BY ch, pc
    )
SELECT
    ch AS channel,
    pc AS promo_code,
    created AS carts_created,
    bought AS carts_purchased,
    if(created = 0, NULL, round(bought / created, 4)) AS conversion,
    if(created = 0, NULL, round(1 - bought / created, 4)) AS cart_abandonment,
    n_orders AS orders,
    n_pairs AS buyers,
    round(revenue, 2) AS revenue,
    if(n_orders = 0, NULL, round(revenue / n_orders, 2)) AS aov,
    if(n_pairs = 0, NULL, round(repeat_pairs / n_pairs, 4)) AS repeat_purchase,
    if(delivered = 0, NULL, round(answered_n / delivered, 4)) AS post_purchase_response_rate,
    if(score_n = 0, NULL, round(score_sum / score_n, 2)) AS feedback_score,
    indexOf({spend_channels:Array(String)}, ch) AS spend_idx,
    if(spend_idx = 0 OR pc != '*', NULL, {spend_amounts:Array(Float64)}[spend_idx]) AS spend,
    if(spend > 0, round((revenue - spend) / spend, 4), NULL) AS roi
FROM merged
ORDER BY channel = '*' DESC, channel, promo_code = '*' DESC, promo_code
