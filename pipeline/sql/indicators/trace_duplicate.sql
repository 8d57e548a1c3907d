-- A traceability code sold more than once (counterfeit, resale or substitution signal).
-- Every sale of a code after its first sale (by event time, then event id) is a hit for the
-- enterprise that made it; codes are looked up over the trailing ${trace_lookback_days} days.
WITH codes AS (
    SELECT event_id, event_time, enterprise_id, product_id, biz_date, trace_code
    FROM sales
    WHERE trace_code IS NOT NULL
      AND biz_date BETWEEN ${from} - INTERVAL '${trace_lookback_days} days' AND ${to}
),
-- Only codes sold in the run's days can be hits: look those up first (small), then fetch
-- every sale of them in the lookback.
run_codes AS (
    SELECT DISTINCT trace_code FROM codes WHERE biz_date BETWEEN ${from} AND ${to}
),
candidates AS (
    SELECT c.* FROM run_codes r JOIN codes c ON c.trace_code = r.trace_code
),
dup AS (
    SELECT trace_code FROM candidates GROUP BY trace_code HAVING COUNT(*) > 1
),
occ AS (
    SELECT c.enterprise_id, c.product_id, c.biz_date, c.trace_code,
           ROW_NUMBER() OVER (PARTITION BY c.trace_code ORDER BY c.event_time, c.event_id) AS rn,
           FIRST_VALUE(c.enterprise_id) OVER (PARTITION BY c.trace_code ORDER BY c.event_time, c.event_id) AS first_seller,
           FIRST_VALUE(c.biz_date) OVER (PARTITION BY c.trace_code ORDER BY c.event_time, c.event_id) AS first_day
    FROM candidates c JOIN dup d ON d.trace_code = c.trace_code
)
SELECT enterprise_id, product_id, biz_date,
       'trace_code_duplicate' AS indicator,
       MIN(first_day) AS window_start,
       biz_date AS window_end,
       CAST(COUNT(*) AS DOUBLE) AS observed,
       0.0 AS expected,
       MIN(concat('code=', trace_code, ';first_sold=', CAST(first_day AS VARCHAR),
                  ';first_seller=', first_seller)) AS detail
FROM occ
WHERE rn > 1 AND biz_date BETWEEN ${from} AND ${to}
GROUP BY enterprise_id, product_id, biz_date
