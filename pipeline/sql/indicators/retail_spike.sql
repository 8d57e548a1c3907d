-- Retail sales spikes per enterprise × product × business day, against the enterprise's own
-- trailing 28-day baseline (today excluded). Days without sales count as zero: the baseline
-- mean is the 28-day sum / 28.
--
-- Ordinary products  → sales_spike:          qty ≥ ${spike_ratio} × mean and
--                                             qty − mean ≥ ${spike_z} × √mean + ${spike_abs}
-- Narcotic, psychotropic and ephedrine-containing products → special_drug_volume, with the
-- more sensitive ${special_ratio}, ${special_z}, ${special_abs}.
-- The √mean term is the count noise of the baseline (Poisson-like retail demand), so a
-- slow-moving product needs a larger excess than a fast-moving one.
-- The baseline is a join of each judged day with its own 28 prior days (a hash join on
-- enterprise × product with a date range), so only the run's days are aggregated.
-- Judged only where the enterprise reported sales on ≥ ${min_active_days} of the prior 28 days
-- and the product sold on at least 3 of them: a product without a baseline cannot spike
-- against it (a product sold that was never bought is the reconciliation query's business).
WITH daily AS (
    SELECT enterprise_id, product_id, biz_date, qty FROM retail_daily
),
judged AS (
    SELECT * FROM daily WHERE biz_date BETWEEN ${from} AND ${to}
),
active_days AS (
    SELECT DISTINCT enterprise_id, biz_date FROM daily
),
active AS (
    SELECT d.enterprise_id, d.biz_date, COUNT(h.biz_date) AS active_days
    FROM (SELECT DISTINCT enterprise_id, biz_date FROM judged) d
    JOIN active_days h
      ON h.enterprise_id = d.enterprise_id
     AND h.biz_date BETWEEN d.biz_date - INTERVAL '28 days' AND d.biz_date - INTERVAL '1 day'
    GROUP BY d.enterprise_id, d.biz_date
),
base AS (
    SELECT j.enterprise_id, j.product_id, j.biz_date, j.qty,
           SUM(h.qty) / 28.0 AS mean,
           COUNT(h.qty) AS sale_days
    FROM judged j
    JOIN daily h
      ON h.enterprise_id = j.enterprise_id AND h.product_id = j.product_id
     AND h.biz_date BETWEEN j.biz_date - INTERVAL '28 days' AND j.biz_date - INTERVAL '1 day'
    GROUP BY j.enterprise_id, j.product_id, j.biz_date, j.qty
)
SELECT b.enterprise_id,
       b.product_id,
       b.biz_date,
       CASE WHEN p.special_class IN ('narcotic', 'psychotropic', 'ephedrine')
            THEN 'special_drug_volume' ELSE 'sales_spike' END AS indicator,
       b.biz_date - INTERVAL '28 days' AS window_start,
       b.biz_date AS window_end,
       b.qty AS observed,
       b.mean AS expected,
       concat('class=', p.special_class, ';basis=retail_sales') AS detail
FROM base b
JOIN active a ON a.enterprise_id = b.enterprise_id AND a.biz_date = b.biz_date
JOIN products p ON p.product_id = b.product_id
WHERE b.biz_date BETWEEN ${from} AND ${to}
  AND a.active_days >= ${min_active_days}
  AND b.sale_days >= 3
  AND (
        (p.special_class IN ('narcotic', 'psychotropic', 'ephedrine')
         AND b.qty >= ${special_ratio} * b.mean
         AND b.qty - b.mean >= ${special_z} * sqrt(b.mean) + ${special_abs})
     OR (p.special_class NOT IN ('narcotic', 'psychotropic', 'ephedrine')
         AND b.qty >= ${spike_ratio} * b.mean
         AND b.qty - b.mean >= ${spike_z} * sqrt(b.mean) + ${spike_abs})
  )
