-- Retail price far below the market (counterfeit signal).
-- Market reference for a product on day D: the mean of the province's daily median retail
-- prices over the prior 28 days (D excluded; at least 7 days). Own reference: the
-- enterprise's own package-weighted mean retail price of the product over the same 28 days (at
-- least ${own_price_days} days with sales). An enterprise's price on D is its package-weighted
-- mean retail price. It is a hit when
--   price < ${price_ratio} × market reference                           (far below the market), or
--   price < ${own_price_ratio} × own reference and < ${own_market_ratio} × market reference
--                                           (far below its own usual price, and below the market).
-- Promotions (a tenth to a quarter off) and price changes stay above the own-price bound; a
-- cut far below the enterprise's own prices is caught even where its prices were high.
-- The sliding sums are taken in whole thousandths of a yuan (integers): a floating-point
-- sliding sum depends on where the frame started sliding, so the same day judged in a run
-- over a longer range would get a reference differing in its last digits.
WITH market_day AS (
    SELECT product_id, biz_date, med FROM market_daily
),
market AS (
    SELECT product_id, biz_date,
           CAST(SUM(CAST(round(med * 1000) AS BIGINT)) OVER w AS DOUBLE) / 1000.0
             / CAST(COUNT(med) OVER w AS DOUBLE) AS reference,
           COUNT(med) OVER w AS reference_days
    FROM market_day
    WINDOW w AS (PARTITION BY product_id ORDER BY biz_date
                 RANGE BETWEEN INTERVAL '28 days' PRECEDING AND INTERVAL '1 day' PRECEDING)
),
ent_day AS (
    SELECT enterprise_id, product_id, biz_date, amount_milli, CAST(qty AS BIGINT) AS qty
    FROM retail_daily
),
-- The own references of the judged days all lie in [${from} − 28, ${to} − 1]: the part inside
-- every judged day's window, [${to} − 28, ${from} − 1], is one aggregation per enterprise ×
-- product (`own_middle`: the whole window when one day is judged); the union's other days
-- (its first and last, when several days are judged) are joined with the judged days whose
-- windows hold them (`own_edge`), so a run over n days pairs each judged row with n − 1 days
-- of history, not 28. A day without prior sales has no own reference.
judged AS (
    SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '1 day' AS hi
    FROM ent_day WHERE biz_date BETWEEN ${from} AND ${to}
),
own_middle AS (
    SELECT enterprise_id, product_id, SUM(amount_milli) AS amount_milli,
           COUNT(amount_milli) AS priced_days, SUM(qty) AS qty, COUNT(qty) AS own_days
    FROM ent_day
    WHERE biz_date BETWEEN ${to} - INTERVAL '28 days' AND ${from} - INTERVAL '1 day'
    GROUP BY enterprise_id, product_id
),
own_edge AS (
    SELECT j.enterprise_id, j.product_id, j.biz_date, SUM(h.amount_milli) AS amount_milli,
           COUNT(h.amount_milli) AS priced_days, SUM(h.qty) AS qty, COUNT(h.qty) AS own_days
    FROM judged j
    JOIN (SELECT enterprise_id, product_id, biz_date, amount_milli, qty FROM ent_day
          WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to} - INTERVAL '1 day'
            AND (biz_date < ${to} - INTERVAL '28 days' OR biz_date >= ${from})) h
      ON h.enterprise_id = j.enterprise_id AND h.product_id = j.product_id
     AND h.biz_date BETWEEN j.lo AND j.hi
    GROUP BY j.enterprise_id, j.product_id, j.biz_date
),
ent AS (
    -- A judged row's price, and its own reference when the window holds ${own_price_days} days.
    SELECT j.enterprise_id, j.product_id, j.biz_date,
           CAST(j.amount_milli AS DOUBLE) / 1000.0 / CAST(j.qty AS DOUBLE) AS price,
           j.qty,
           CASE WHEN COALESCE(m.own_days, 0) + COALESCE(e.own_days, 0) >= ${own_price_days}
                 AND COALESCE(m.priced_days, 0) + COALESCE(e.priced_days, 0) > 0
                THEN CAST(COALESCE(m.amount_milli, 0) + COALESCE(e.amount_milli, 0) AS DOUBLE)
                     / 1000.0 / CAST(COALESCE(m.qty, 0) + COALESCE(e.qty, 0) AS DOUBLE)
           END AS own_reference
    FROM judged j
    LEFT JOIN own_middle m ON m.enterprise_id = j.enterprise_id AND m.product_id = j.product_id
    LEFT JOIN own_edge e ON e.enterprise_id = j.enterprise_id AND e.product_id = j.product_id
                        AND e.biz_date = j.biz_date
)
SELECT e.enterprise_id, e.product_id, e.biz_date,
       'price_below_median' AS indicator,
       e.biz_date - INTERVAL '28 days' AS window_start,
       e.biz_date AS window_end,
       e.price AS observed,
       m.reference AS expected,
       CASE WHEN e.own_reference IS NULL
            THEN concat('packages=', CAST(e.qty AS VARCHAR))
            ELSE concat('packages=', CAST(e.qty AS VARCHAR),
                        ';own_price=', CAST(round(e.own_reference, 2) AS VARCHAR)) END AS detail
FROM ent e
JOIN market m ON m.product_id = e.product_id AND m.biz_date = e.biz_date
WHERE m.reference_days >= 7
  AND (e.price < ${price_ratio} * m.reference
       OR (e.price < ${own_price_ratio} * e.own_reference
           AND e.price < ${own_market_ratio} * m.reference))
