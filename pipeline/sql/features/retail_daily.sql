-- Feature table `retail_daily`: retail sales (to patients) per enterprise × product × business
-- day over [${from} − 31 days, ${to}], the input of the retail indicators: packages (`qty`),
-- the package-weighted mean price (`price`, NULL where no price was reported) and the amount
-- in thousandths of a yuan, each sale rounded (`amount_milli`, exact sums for the price
-- indicator). Built once per run (CREATE TABLE … AS) and read by several indicator queries, so
-- the sales lake is scanned for it once; a row describes its own day only, so the nightly job
-- keeps each day's rows in its day store.
SELECT enterprise_id, product_id, biz_date, CAST(SUM(quantity) AS DOUBLE) AS qty,
       SUM(quantity * unit_price) / SUM(quantity) AS price,
       SUM(CAST(round(quantity * unit_price * 1000) AS BIGINT)) AS amount_milli
FROM sales
WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
GROUP BY enterprise_id, product_id, biz_date
