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
-- The baselines of the judged days all lie in [${from} − 28, ${to} − 1]. The part of that
-- union inside every judged day's window, [${to} − 28, ${from} − 1], is one aggregation per
-- enterprise × product (`middle`: the whole baseline when one day is judged); the rest (the
-- union's first and last days, when several are judged) is joined with the judged days whose
-- windows hold it (`edge`), so a run over n days pairs each judged row with n − 1 days of
-- history, not 28. Sums are of whole packages and of amounts in thousandths of a yuan (each
-- sale rounded), so a day's baseline does not depend on the run's range.
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
-- The days inside every judged day's window (none when more than 28 days are judged).
middle AS (
    SELECT enterprise_id, product_id, SUM(qty) AS total, SUM(amount_milli) AS amount_milli,
           COUNT(amount_milli) AS priced_days, MIN(biz_date) AS first_day,
           COUNT(qty) AS sale_days
    FROM retail_daily
    WHERE biz_date BETWEEN ${to} - INTERVAL '28 days' AND ${from} - INTERVAL '1 day'
    GROUP BY enterprise_id, product_id
),
-- The other days of the union, each joined with the judged days whose window holds it.
edge AS (
    SELECT j.enterprise_id, j.product_id, j.biz_date, SUM(h.qty) AS total,
           SUM(h.amount_milli) AS amount_milli, COUNT(h.amount_milli) AS priced_days,
           MIN(h.biz_date) AS first_day, COUNT(h.qty) AS sale_days
    FROM judged j
    JOIN (SELECT enterprise_id, product_id, biz_date, qty, amount_milli FROM retail_daily
          WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to} - INTERVAL '1 day'
            AND (biz_date < ${to} - INTERVAL '28 days' OR biz_date >= ${from})) h
      ON h.enterprise_id = j.enterprise_id AND h.product_id = j.product_id
     AND h.biz_date BETWEEN j.lo AND j.hi
    GROUP BY j.enterprise_id, j.product_id, j.biz_date
),
base AS (
    SELECT j.enterprise_id, j.product_id, j.biz_date, j.qty, j.price,
           COALESCE(m.total, 0.0) + COALESCE(e.total, 0.0) AS total,
           CASE WHEN COALESCE(m.priced_days, 0) + COALESCE(e.priced_days, 0) > 0
                THEN CAST(COALESCE(m.amount_milli, 0) + COALESCE(e.amount_milli, 0) AS DOUBLE)
                     / 1000.0 / (COALESCE(m.total, 0.0) + COALESCE(e.total, 0.0))
           END AS usual_price,
           CAST(j.biz_date - least(m.first_day, e.first_day) AS DOUBLE) AS span_days,
           COALESCE(m.sale_days, 0) + COALESCE(e.sale_days, 0) AS sale_days
    FROM judged j
    LEFT JOIN middle m ON m.enterprise_id = j.enterprise_id AND m.product_id = j.product_id
    LEFT JOIN edge e ON e.enterprise_id = j.enterprise_id AND e.product_id = j.product_id
                    AND e.biz_date = j.biz_date
    WHERE m.sale_days IS NOT NULL OR e.sale_days IS NOT NULL
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
