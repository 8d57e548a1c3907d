-- Feature table `retail_daily`: retail sales (to patients) per enterprise × product × business
-- day over [${from} − 28 days, ${to}], the input of the retail indicators. Built once per run
-- (CREATE TABLE … AS) and read by several indicator queries, so the sales lake is scanned
-- for it once.
SELECT enterprise_id, product_id, biz_date, CAST(SUM(quantity) AS DOUBLE) AS qty
FROM sales
WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
GROUP BY enterprise_id, product_id, biz_date
