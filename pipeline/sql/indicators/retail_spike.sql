-- Retail sales spikes per enterprise × product × business day, against the enterprise's own
-- trailing baseline of up to 28 days (today excluded).
--
-- Baseline: the days from the product's first sale in the 28 days before D up to D − 1 (a
-- product listed two weeks ago has a two-week baseline, not a 28-day one diluted by the weeks
-- before it was on the shelf); days without sales count as zero: mean = sum / those days.
-- Judged only where that baseline spans ≥ ${min_listed_days} days, the enterprise reported
-- sales on ≥ ${min_active_days} of the prior 28 days and the product sold on at least 3 of
-- them: a product without a baseline cannot spike against it (a product sold that was never
-- bought is the reconciliation query's business).
--
-- Promotions: on a day the enterprise sells the product at ≤ ${promo_price_ratio} × its own
-- package-weighted mean price of the baseline, the expected sales are mean × ${promo_lift}
-- (a promotion lifts demand; the enterprise's own price history tells one from a spike).
--
-- Ordinary products  → sales_spike:          qty ≥ ${spike_ratio} × expected and
--                                             qty − expected ≥ ${spike_z} × √expected + ${spike_abs}
-- Narcotic, psychotropic and ephedrine-containing products → special_drug_volume, with the
-- more sensitive ${special_ratio}, ${special_z}, ${special_abs}.
-- The √expected term is the count noise of the baseline (Poisson-like retail demand), so a
-- slow-moving product needs a larger excess than a fast-moving one.
-- The baseline is a join of each judged day with its own 28 prior days (a hash join on
-- enterprise × product with a date range), so only the run's days are aggregated.
WITH daily AS (
    SELECT enterprise_id, product_id, biz_date, qty, price FROM retail_daily
),
judged AS (
    -- Each judged day with the bounds of its prior days, computed once per row rather than
    -- once per candidate pair of the joins below.
    SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '1 day' AS hi
    FROM daily WHERE biz_date BETWEEN ${from} AND ${to}
),
active_days AS (
    SELECT DISTINCT enterprise_id, biz_date FROM daily
),
active AS (
    SELECT d.enterprise_id, d.biz_date, COUNT(h.biz_date) AS active_days
    FROM (SELECT DISTINCT enterprise_id, biz_date, lo, hi FROM judged) d
    JOIN active_days h
      ON h.enterprise_id = d.enterprise_id AND h.biz_date BETWEEN d.lo AND d.hi
    GROUP BY d.enterprise_id, d.biz_date
),
base AS (
    SELECT j.enterprise_id, j.product_id, j.biz_date, j.qty, j.price,
           SUM(h.qty) AS total,
           SUM(h.qty * h.price) / SUM(h.qty) AS usual_price,
           CAST(j.biz_date - MIN(h.biz_date) AS DOUBLE) AS span_days,
           COUNT(h.qty) AS sale_days
    FROM judged j
    JOIN daily h
      ON h.enterprise_id = j.enterprise_id AND h.product_id = j.product_id
     AND h.biz_date BETWEEN j.lo AND j.hi
    GROUP BY j.enterprise_id, j.product_id, j.biz_date, j.qty, j.price
),
expect AS (
    SELECT b.*,
           COALESCE(b.price <= ${promo_price_ratio} * b.usual_price, false) AS promotion,
           b.total / b.span_days
             * CASE WHEN COALESCE(b.price <= ${promo_price_ratio} * b.usual_price, false)
                    THEN ${promo_lift} ELSE 1.0 END AS expected
    FROM base b
    WHERE b.span_days >= ${min_listed_days}
)
SELECT b.enterprise_id,
       b.product_id,
       b.biz_date,
       CASE WHEN p.special_class IN ('narcotic', 'psychotropic', 'ephedrine')
            THEN 'special_drug_volume' ELSE 'sales_spike' END AS indicator,
       b.biz_date - INTERVAL '28 days' AS window_start,
       b.biz_date AS window_end,
       b.qty AS observed,
       b.expected AS expected,
       concat('class=', p.special_class, ';basis=retail_sales',
              CASE WHEN b.promotion THEN ';promotion' ELSE '' END) AS detail
FROM expect b
JOIN active a ON a.enterprise_id = b.enterprise_id AND a.biz_date = b.biz_date
JOIN products p ON p.product_id = b.product_id
WHERE b.biz_date BETWEEN ${from} AND ${to}
  AND a.active_days >= ${min_active_days}
  AND b.sale_days >= 3
  AND (
        (p.special_class IN ('narcotic', 'psychotropic', 'ephedrine')
         AND b.qty >= ${special_ratio} * b.expected
         AND b.qty - b.expected >= ${special_z} * sqrt(b.expected) + ${special_abs})
     OR (p.special_class NOT IN ('narcotic', 'psychotropic', 'ephedrine')
         AND b.qty >= ${spike_ratio} * b.expected
         AND b.qty - b.expected >= ${spike_z} * sqrt(b.expected) + ${spike_abs})
  )
