-- A traceability code sold more than once (counterfeit, resale or substitution signal).
-- Every sale of a code after an earlier sale of it (by event time, then event id) within the
-- ${trace_lookback_days} days up to the sale's day is a hit for the enterprise that made it;
-- the evidence names the earliest such sale (its day and seller).
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
sold AS (
    SELECT c.* FROM candidates c JOIN dup d ON d.trace_code = c.trace_code
),
-- Each sale of the run's days with the earlier sales of its code in its own look-back (a
-- day is judged against its own ${trace_lookback_days} days whatever the run's range).
earlier AS (
    SELECT r.event_id, r.event_time, r.enterprise_id, r.product_id, r.biz_date, r.trace_code,
           e.event_time AS e_time, e.event_id AS e_id, e.biz_date AS e_day,
           e.enterprise_id AS e_seller
    FROM sold r
    JOIN sold e
      ON e.trace_code = r.trace_code
     AND e.biz_date BETWEEN r.biz_date - INTERVAL '${trace_lookback_days} days' AND r.biz_date
     AND (e.event_time < r.event_time OR (e.event_time = r.event_time AND e.event_id < r.event_id))
    WHERE r.biz_date BETWEEN ${from} AND ${to}
),
firsts AS (
    SELECT enterprise_id, product_id, biz_date, trace_code, e_day, e_seller,
           ROW_NUMBER() OVER (PARTITION BY event_id, event_time, enterprise_id, product_id,
                                           biz_date, trace_code
                              ORDER BY e_time, e_id) AS k
    FROM earlier
)
SELECT enterprise_id, product_id, biz_date,
       'trace_code_duplicate' AS indicator,
       MIN(e_day) AS window_start,
       biz_date AS window_end,
       CAST(COUNT(*) AS DOUBLE) AS observed,
       0.0 AS expected,
       MIN(concat('code=', trace_code, ';first_sold=', CAST(e_day AS VARCHAR),
                  ';first_seller=', e_seller)) AS detail
FROM firsts
WHERE k = 1
GROUP BY enterprise_id, product_id, biz_date
