-- Stream baseline, one business day: the first sale (by event time, then event id) of every
-- traceability code sold on ${to}, as in `trace_duplicate.sql`. The stream takes the earliest
-- over the days of the lookback (each day is written once, and again only when its sales
-- change: see `baseline_trace_days.sql`).
-- Nearly every code is sold once a day: those rows are their code's first sale as they are
-- (a hash count finds them), and only the codes sold more than once that day are ranked.
WITH day AS (
    SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date
    FROM sales
    WHERE trace_code IS NOT NULL
      AND biz_date = ${to}
),
sold AS (
    SELECT trace_code, COUNT(*) AS n FROM day GROUP BY trace_code
)
SELECT d.trace_code, d.event_time, d.event_id, d.enterprise_id, d.product_id, d.biz_date
FROM day d
JOIN sold s ON s.trace_code = d.trace_code
WHERE s.n = 1
UNION ALL
SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date
FROM (
    SELECT d.trace_code, d.event_time, d.event_id, d.enterprise_id, d.product_id, d.biz_date,
           ROW_NUMBER() OVER (PARTITION BY d.trace_code ORDER BY d.event_time, d.event_id) AS rn
    FROM day d
    JOIN sold s ON s.trace_code = d.trace_code
    WHERE s.n > 1
) WHERE rn = 1
