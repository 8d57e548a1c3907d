-- Retail price far below the market (counterfeit signal).
-- Market reference for a product on day D: the mean of the province's daily median retail
-- prices over the prior 28 days (D excluded; at least 7 days). An enterprise's price on D is
-- its quantity-weighted mean retail price; it is a hit below ${price_ratio} × the reference.
WITH retail AS (
    SELECT enterprise_id, product_id, biz_date, quantity, unit_price
    FROM sales
    WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
),
market_day AS (
    SELECT product_id, biz_date, median(unit_price) AS med
    FROM retail GROUP BY product_id, biz_date
),
market AS (
    SELECT product_id, biz_date,
           AVG(med) OVER w AS reference,
           COUNT(med) OVER w AS reference_days
    FROM market_day
    WINDOW w AS (PARTITION BY product_id ORDER BY biz_date
                 RANGE BETWEEN INTERVAL '28 days' PRECEDING AND INTERVAL '1 day' PRECEDING)
),
ent AS (
    SELECT enterprise_id, product_id, biz_date,
           SUM(quantity * unit_price) / SUM(quantity) AS price,
           SUM(quantity) AS qty
    FROM retail WHERE biz_date BETWEEN ${from} AND ${to}
    GROUP BY enterprise_id, product_id, biz_date
)
SELECT e.enterprise_id, e.product_id, e.biz_date,
       'price_below_median' AS indicator,
       e.biz_date - INTERVAL '28 days' AS window_start,
       e.biz_date AS window_end,
       e.price AS observed,
       m.reference AS expected,
       concat('packages=', CAST(e.qty AS VARCHAR)) AS detail
FROM ent e
JOIN market m ON m.product_id = e.product_id AND m.biz_date = e.biz_date
WHERE m.reference_days >= 7 AND e.price < ${price_ratio} * m.reference
