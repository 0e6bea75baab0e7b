-- name: engagement
-- answers: Seed engagement metrics for a window compared with the previous window of the same length:
--   per artisan its API call volume and growth, inventory-sync listing error rate and its trend, and
--   whether it was active; a first row (artisan '*') with the marketplace totals: active API
--   integrations (partner × artisan pairs with calls) and the artisan active rate.
-- formula: call growth = (calls − previous calls) ÷ previous calls (NULL when there were none)
-- formula: listing sync error rate = listings updated in the window with sync_errors > 0 ÷ listings
--   updated in the window; trend = this window's rate − the previous window's
-- formula: active artisan = at least one API call or one order in the window;
--   artisan active rate = active artisans ÷ artisans that joined before the window's end
-- note: calls from the per-day rollup loomgate_calls_1d for whole UTC days inside either window and from
--   loomgate_calls_1m for the partial days (window edges); KPI tables read with FINAL (re-imports count once).
-- param: start DateTime64(3, 'UTC') = -30d  -- start of the window (inclusive)
-- param: end DateTime64(3, 'UTC') = now     -- end of the window (exclusive); previous = same length before
WITH
    {start:DateTime64(3, 'UTC')} AS w_start,
    {end:DateTime64(3, 'UTC')} AS w_end,
    fromUnixTimestamp64Milli(2 * toUnixTimestamp64Milli(w_start) - toUnixTimestamp64Milli(w_end), 'UTC') AS p_start,
    -- Minutes [m_prev, m_cur) are the previous window, [m_cur, w_end) this one.  Whole UTC days from the
    -- per-day rollup: [d_first, d_last) except the day that holds m_cur when m_cur is not a midnight; every
    -- other minute from the per-minute rollup (conditions on toStartOfHour(minute), its first sort key column).
    toStartOfMinute(p_start) AS m_prev,
    toStartOfMinute(w_start) AS m_cur,
    toStartOfDay(m_prev - toIntervalMillisecond(1)) + toIntervalDay(1) AS d_first,
    toStartOfDay(toStartOfMinute(w_end - toIntervalMillisecond(1)) + toIntervalMinute(1)) AS d_last,
    toStartOfDay(m_cur) AS split_day_start,
    toStartOfDay(m_cur - toIntervalMillisecond(1)) + toIntervalDay(1) AS split_day_end,
    call_rows AS (
        SELECT artisan, partner, calls, toDateTime(day, 'UTC') >= m_cur AS cur
        FROM loomgate_calls_1d
        WHERE day >= toDate(d_first) AND day < toDate(d_last) AND artisan != ''
          AND NOT (day >= toDate(split_day_start) AND day < toDate(split_day_end))
        UNION ALL
        SELECT artisan, partner, calls, minute >= m_cur AS cur
        FROM loomgate_calls_1m
        WHERE toStartOfHour(minute) >= toStartOfHour(m_prev) AND toStartOfHour(minute) < w_end
          AND (toStartOfHour(minute) < d_first OR toStartOfHour(minute) >= d_last
               OR (toStartOfHour(minute) >= split_day_start AND toStartOfHour(minute) < split_day_end))
          AND minute >= m_prev AND minute < w_end AND artisan != ''
    ),
    calls AS (
        SELECT artisan,
               sumIf(calls, cur) AS n_calls,
               sumIf(calls, NOT cur) AS n_prev,
               uniqExactIf(partner, cur AND calls > 0) AS n_partners,
               uniqExactIf(partner, NOT cur AND calls > 0) AS n_partners_prev
        FROM call_rows
        GROUP BY artisan
    ),
    listings AS (
        SELECT artisan_id AS artisan,
               countIf(updated >= w_start) AS n_listings,
               countIf(updated >= w_start AND sync_errors > 0) AS n_err,
               countIf(updated < w_start) AS n_listings_prev,
               countIf(updated < w_start AND sync_errors > 0) AS n_err_prev
        FROM kpi_listings FINAL
        WHERE updated >= p_start AND updated < w_end
        GROUP BY artisan_id
    ),
    orders AS (
        SELECT artisan_id AS artisan, count() AS n_orders
        FROM kpi_orders FINAL
        WHERE ts >= w_start AND ts < w_end
        GROUP BY artisan_id
    ),
    everyone AS (
        SELECT artisan_id AS artisan FROM kpi_artisans FINAL WHERE joined < toDate(w_end)
        UNION DISTINCT SELECT artisan FROM calls
    ),
    per_artisan AS (
        SELECT e.artisan AS x_artisan,
               c.n_calls AS x_calls, c.n_prev AS x_calls_prev,
               c.n_partners AS x_integrations, c.n_partners_prev AS x_integrations_prev,
               l.n_listings AS x_listings, l.n_err AS x_err, l.n_listings_prev AS x_listings_prev,
               l.n_err_prev AS x_err_prev,
               o.n_orders AS x_orders,
               toUInt8(c.n_calls > 0 OR o.n_orders > 0) AS x_active
        FROM everyone AS e
        LEFT JOIN calls AS c ON c.artisan = e.artisan
        LEFT JOIN listings AS l ON l.artisan = e.artisan
        LEFT JOIN orders AS o ON o.artisan = e.artisan
    )
SELECT * FROM (
    SELECT '*' AS artisan,
           sum(x_calls) AS calls,
           sum(x_calls_prev) AS calls_prev,
           if(calls_prev = 0, NULL, round((calls - calls_prev) / calls_prev, 4)) AS call_growth,
           sum(x_integrations) AS active_integrations,
           sum(x_integrations_prev) AS active_integrations_prev,
           toNullable(round(sum(x_active) / count(), 4)) AS artisan_active_rate,
           sum(x_listings) AS listings_updated,
           round(sum(x_err) / nullIf(listings_updated, 0), 4) AS listing_sync_error_rate,
           round(listing_sync_error_rate - sum(x_err_prev) / nullIf(sum(x_listings_prev), 0), 4)
               AS listing_sync_error_trend,
           sum(x_orders) AS orders,
           sum(x_active) AS active
    FROM per_artisan
    UNION ALL
    SELECT x_artisan, x_calls, x_calls_prev,
           if(x_calls_prev = 0, NULL, round((x_calls - x_calls_prev) / x_calls_prev, 4)),
           x_integrations, x_integrations_prev, NULL, x_listings,
           round(x_err / nullIf(x_listings, 0), 4),
           round(x_err / nullIf(x_listings, 0) - x_err_prev / nullIf(x_listings_prev, 0), 4),
           x_orders, x_active
    FROM per_artisan
)
ORDER BY artisan = '*' DESC, calls DESC, artisan
