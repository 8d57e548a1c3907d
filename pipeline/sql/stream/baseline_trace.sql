-- Stream baseline: the first sale (by event time, then event id) of every traceability code
-- sold in the ${trace_lookback_days} days ending with the run's last day, as in
-- `trace_duplicate.sql`.
SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date
FROM (
    SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date,
           ROW_NUMBER() OVER (PARTITION BY trace_code ORDER BY event_time, event_id) AS rn
    FROM sales
    WHERE trace_code IS NOT NULL
      AND biz_date BETWEEN ${to} - INTERVAL '${trace_lookback_days} days' AND ${to}
) WHERE rn = 1
