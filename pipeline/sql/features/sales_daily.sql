-- Day table `sales_daily` of the anomaly model's features: packages sold (every sale with a
-- positive quantity, retail and wholesale) per enterprise × product × business day over
-- [${from} − 31 days, ${to}], with the package-weighted mean price. A row describes its own day
-- only, so the nightly job keeps each day's rows in its day store and the feature query
-- (`enterprise_daily.sql`) reads 28 days of these instead of 28 days of sales.
SELECT enterprise_id, product_id, biz_date,
       CAST(SUM(quantity) AS DOUBLE) AS qty,
       SUM(quantity * unit_price) / SUM(quantity) AS price
FROM sales
WHERE quantity > 0 AND biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
GROUP BY enterprise_id, product_id, biz_date
