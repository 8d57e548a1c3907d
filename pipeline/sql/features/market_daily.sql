-- Feature table `market_daily`: the median retail unit price per product × business day over
-- [${from} − 31 days, ${to}], the market reference the price indicator compares each
-- enterprise's price with. Built once per run (CREATE TABLE … AS) like `retail_daily`; a row
-- describes its own day only, so the nightly job keeps each day's rows in its day store.
SELECT product_id, biz_date, median(unit_price) AS med
FROM sales
WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
GROUP BY product_id, biz_date
