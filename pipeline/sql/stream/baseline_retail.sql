-- Stream baseline: one business day's retail sales per enterprise × product (the nightly job
-- writes one file per day of the 28 ending with its last day: the history the special-drug
-- surge compares against). Without a day store the day is read from the run's
-- `retail_daily` table; with one, the store's file of the day is linked instead.
SELECT enterprise_id, product_id, biz_date, qty
FROM retail_daily
WHERE biz_date = ${to}
