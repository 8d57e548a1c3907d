-- Feature table `retail_daily`: retail sales (to patients) per enterprise × product × business
-- day over [${from} − 28 days, ${to}], the input of the retail indicators: packages (`qty`) and
-- the package-weighted mean price (`price`, NULL where no price was reported). Built once per
-- run (CREATE TABLE … AS) and read by several indicator queries, so the sales lake is scanned
-- for it once.
SELECT enterprise_id, product_id, biz_date, CAST(SUM(quantity) AS DOUBLE) AS qty,
       SUM(quantity * unit_price) / SUM(quantity) AS price
FROM sales
WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
GROUP BY enterprise_id, product_id, biz_date
