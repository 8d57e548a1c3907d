-- Purchase and production spikes (lumpy flows: orders and production runs come every few
-- days, so the test is against the largest recent one, as in the suspicious-order rules).
--
-- A day's purchases (or production) of a product spike when they are ≥ ${lumpy_max_ratio} × the
-- largest day in the prior 28 days and ≥ ${lumpy_mean_ratio} × the 28-day daily mean, with at
-- least one such day in the baseline. Normal orders fill up to the order-up-to level from below
-- the reorder point, so two normal orders differ by less than ×2.5 (the default). Purchases of narcotic, psychotropic and
-- ephedrine-containing products report as special_drug_volume.
-- Returns are not orders: a purchase from a chain store or single pharmacy (a customer sending
-- packages back) counts neither as a spike nor in the baseline, where a return of one package
-- would make the next ordinary order look like a spike.
WITH flows AS (
    SELECT 'purchase' AS flow, p.enterprise_id, p.product_id, p.biz_date,
           CAST(SUM(p.quantity) AS DOUBLE) AS qty
    FROM purchase p
    LEFT JOIN enterprises s ON s.enterprise_id = p.supplier_id
    WHERE p.biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
      AND (s.enterprise_type IS NULL OR s.enterprise_type NOT IN ('chain_store', 'single_pharmacy'))
    GROUP BY p.enterprise_id, p.product_id, p.biz_date
    UNION ALL
    SELECT 'production', enterprise_id, product_id, biz_date, CAST(SUM(quantity) AS DOUBLE)
    FROM production WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
    GROUP BY enterprise_id, product_id, biz_date
),
judged AS (
    -- With the bounds of each judged day's prior days, computed once per row.
    SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '1 day' AS hi
    FROM flows WHERE biz_date BETWEEN ${from} AND ${to}
),
-- The baselines of the judged days all lie in [${from} − 28, ${to} − 1]: the part inside every
-- judged day's window, [${to} − 28, ${from} − 1], is one aggregation per flow × enterprise ×
-- product (`middle`: the whole window when one day is judged); the other days (the first and
-- last n − 1 of a run over n days) are joined with the judged days whose windows hold them
-- (`edge`), so a judged row meets n − 1 days of history, not 28. The largest day combines with
-- `greatest` (which skips a missing side), sums and counts add.
middle AS (
    SELECT flow, enterprise_id, product_id,
           MAX(qty) AS base_max, SUM(qty) AS base_sum, COUNT(qty) AS base_days
    FROM flows
    WHERE biz_date BETWEEN ${to} - INTERVAL '28 days' AND ${from} - INTERVAL '1 day'
    GROUP BY flow, enterprise_id, product_id
),
edge AS (
    SELECT j.flow, j.enterprise_id, j.product_id, j.biz_date,
           MAX(h.qty) AS base_max, SUM(h.qty) AS base_sum, COUNT(h.qty) AS base_days
    FROM judged j
    JOIN (SELECT flow, enterprise_id, product_id, biz_date, qty FROM flows
          WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to} - INTERVAL '1 day'
            AND (biz_date < ${to} - INTERVAL '28 days' OR biz_date >= ${from})) h
      ON h.flow = j.flow AND h.enterprise_id = j.enterprise_id AND h.product_id = j.product_id
     AND h.biz_date BETWEEN j.lo AND j.hi
    GROUP BY j.flow, j.enterprise_id, j.product_id, j.biz_date
),
base AS (
    SELECT j.flow, j.enterprise_id, j.product_id, j.biz_date, j.qty,
           greatest(m.base_max, e.base_max) AS base_max,
           (COALESCE(m.base_sum, 0) + COALESCE(e.base_sum, 0)) / 28.0 AS mean,
           COALESCE(m.base_days, 0) + COALESCE(e.base_days, 0) AS base_days
    FROM judged j
    LEFT JOIN middle m ON m.flow = j.flow AND m.enterprise_id = j.enterprise_id
                      AND m.product_id = j.product_id
    LEFT JOIN edge e ON e.flow = j.flow AND e.enterprise_id = j.enterprise_id
                    AND e.product_id = j.product_id AND e.biz_date = j.biz_date
)
SELECT b.enterprise_id,
       b.product_id,
       b.biz_date,
       CASE WHEN b.flow = 'production' THEN 'production_spike'
            WHEN p.special_class IN ('narcotic', 'psychotropic', 'ephedrine') THEN 'special_drug_volume'
            ELSE 'purchase_spike' END AS indicator,
       b.biz_date - INTERVAL '28 days' AS window_start,
       b.biz_date AS window_end,
       b.qty AS observed,
       b.base_max AS expected,
       concat('class=', p.special_class, ';basis=', b.flow,
              ';mean=', CAST(round(b.mean, 2) AS VARCHAR)) AS detail
FROM base b
JOIN products p ON p.product_id = b.product_id
WHERE b.biz_date BETWEEN ${from} AND ${to}
  AND b.base_days >= 1
  AND b.qty >= ${lumpy_max_ratio} * b.base_max
  AND b.qty >= ${lumpy_mean_ratio} * b.mean
