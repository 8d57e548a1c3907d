-- Stream baseline: retail sales per enterprise × product × business day over the 28 days
-- ending with the run's last day, the history the special-drug surge compares against.
SELECT enterprise_id, product_id, biz_date, qty
FROM retail_daily
WHERE biz_date BETWEEN ${to} - INTERVAL '27 days' AND ${to}
