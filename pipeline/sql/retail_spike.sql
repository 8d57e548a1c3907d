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
-- Judged only where the enterprise reported sales on ≥ ${min_active_days} of the prior 28 days
-- and the product sold on at least 3 of them: a product without a baseline cannot spike
-- against it (a product sold that was never bought is the reconciliation query's business).
WITH daily AS (
    SELECT enterprise_id, product_id, biz_date, CAST(SUM(quantity) AS DOUBLE) AS qty
    FROM sales
    WHERE buyer_id IS NULL AND biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
    GROUP BY enterprise_id, product_id, biz_date
),
active AS (
    SELECT enterprise_id, biz_date,
           COUNT(*) OVER (PARTITION BY enterprise_id ORDER BY biz_date
                          RANGE BETWEEN INTERVAL '28 days' PRECEDING AND INTERVAL '1 day' PRECEDING) AS active_days
    FROM (SELECT DISTINCT enterprise_id, biz_date FROM daily) d
),
base AS (
    SELECT enterprise_id, product_id, biz_date, qty,
           COALESCE(SUM(qty) OVER w, 0) / 28.0 AS mean,
           COUNT(qty) OVER w AS sale_days
    FROM daily
    WINDOW w AS (PARTITION BY enterprise_id, product_id ORDER BY biz_date
                 RANGE BETWEEN INTERVAL '28 days' PRECEDING AND INTERVAL '1 day' PRECEDING)
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
