-- Stream baseline: what each business day of the ${trace_lookback_days}-day lookback ending
-- with ${to} holds of coded sales, as a fingerprint (count, event-id range, packages). A day
-- whose fingerprint is unchanged since its trace-code file was written is not recomputed; a
-- late record changes its day's fingerprint, and that day is written again.
SELECT CAST(biz_date AS VARCHAR) AS day,
       CAST(COUNT(*) AS VARCHAR) || '|' || MIN(event_id) || '|' || MAX(event_id) || '|'
           || CAST(SUM(quantity) AS VARCHAR) AS fingerprint
FROM sales
WHERE trace_code IS NOT NULL
  AND biz_date BETWEEN ${to} - INTERVAL '${trace_lookback_days} days' AND ${to}
GROUP BY biz_date
ORDER BY biz_date
