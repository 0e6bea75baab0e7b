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
    orders AS (
        SELECT key.1 AS ch, key.2 AS pc, order_id, buyer_id, artisan_id, toFloat64(amount) AS value
        FROM kpi_orders FINAL
        ARRAY JOIN [(channel, promo_code), (channel, '*'), ('*', '*')] AS key
        WHERE ts >= w_start AND ts < w_end AND ({currency:String} = '' OR currency = {currency:String})
    ),
    sales AS (
        SELECT ch, pc, count() AS n_orders, sum(value) AS revenue, uniqExact(artisan_id, buyer_id) AS n_buyers
        FROM orders
        GROUP BY ch, pc
    ),
    repeaters AS (
        SELECT ch, pc, count() AS pairs, countIf(n >= 2) AS repeat_pairs
        FROM (SELECT ch, pc, artisan_id, buyer_id, count() AS n FROM orders GROUP BY ch, pc, artisan_id, buyer_id)
        GROUP BY ch, pc
    ),
    feedback AS (
        SELECT o.ch AS ch, o.pc AS pc, count() AS delivered,
               countIf(s.answered) AS answered_n, avgIf(s.score, s.answered AND s.score IS NOT NULL) AS score
        FROM kpi_survey_responses AS s FINAL
        INNER JOIN orders AS o ON o.order_id = s.order_id
        WHERE s.kind = 'post_purchase' AND s.order_id != ''
        GROUP BY ch, pc
    ),
    keys AS (
        SELECT ch, pc FROM carts UNION DISTINCT SELECT ch, pc FROM sales
    )
SELECT
    k.ch AS channel,
    k.pc AS promo_code,
    c.created AS carts_created,
    c.bought AS carts_purchased,
    if(c.created = 0, NULL, round(c.bought / c.created, 4)) AS conversion,
    if(c.created = 0, NULL, round(1 - c.bought / c.created, 4)) AS cart_abandonment,
    s.n_orders AS orders,
    s.n_buyers AS buyers,
    round(s.revenue, 2) AS revenue,
    if(s.n_orders = 0, NULL, round(s.revenue / s.n_orders, 2)) AS aov,
    if(r.pairs = 0, NULL, round(r.repeat_pairs / r.pairs, 4)) AS repeat_purchase,
    if(f.delivered = 0, NULL, round(f.answered_n / f.delivered, 4)) AS post_purchase_response_rate,
    round(f.score, 2) AS feedback_score,
    indexOf({spend_channels:Array(String)}, k.ch) AS spend_idx,
    if(spend_idx = 0 OR k.pc != '*', NULL, {spend_amounts:Array(Float64)}[spend_idx]) AS spend,
    if(spend > 0, round((s.revenue - spend) / spend, 4), NULL) AS roi
FROM keys AS k
LEFT JOIN carts AS c ON c.ch = k.ch AND c.pc = k.pc
LEFT JOIN sales AS s ON s.ch = k.ch AND s.pc = k.pc
LEFT JOIN repeaters AS r ON r.ch = k.ch AND r.pc = k.pc
LEFT JOIN feedback AS f ON f.ch = k.ch AND f.pc = k.pc
ORDER BY channel = '*' DESC, channel, promo_code = '*' DESC, promo_code
