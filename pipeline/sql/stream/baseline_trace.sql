-- Stream baseline, one business day: the first sale (by event time, then event id) of every
-- traceability code sold on ${to}, as in `trace_duplicate.sql`. The stream takes the earliest
-- over the days of the lookback (each day is written once, and again only when its sales
-- change: see `baseline_trace_days.sql`).
SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date
FROM (
    SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date,
           ROW_NUMBER() OVER (PARTITION BY trace_code ORDER BY event_time, event_id) AS rn
    FROM sales
    WHERE trace_code IS NOT NULL
      AND biz_date = ${to}
) WHERE rn = 1
