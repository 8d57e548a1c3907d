-- Stream baseline: every batch that failed a test up to the run's last day, with its first
-- failing business day (as in `batch_quality.sql`).
SELECT product_id, batch_no, MIN(biz_date) AS failed_on
FROM product_test
WHERE result = 'fail' AND biz_date <= ${to}
GROUP BY product_id, batch_no
