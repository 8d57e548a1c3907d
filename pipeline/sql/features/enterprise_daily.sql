-- Feature table of the anomaly model: one row per enterprise × business day in
-- [${from}, ${to}] on which the enterprise reported anything, with its segment (the model is
-- fitted per segment: a pharmacy is not a wholesaler). Every baseline is the enterprise's own
-- (or the enterprise × product's own) prior 28 days, today excluded; ratios are smoothed with
-- +1 so that quiet days do not divide by zero. A feature that has no basis (no prior price for
-- any product sold today, say) is NULL, which the model reads as "typical". Every feature
-- describes the day itself (no trailing multi-day sums except the 7-day purchase/sales
-- balance), so an anomaly does not spill into the days after it.
--
-- Features where only one direction is suspicious are cut at the ordinary value: volumes and
-- the special-drug ratio count only when above their baseline (a quiet day is not a risk),
-- prices only when below the enterprise's own (a price rise is not a counterfeit signal).
-- The model then reads "unusual" as "unusual in the direction a supervisor cares about".
--
--   sales_ratio            packages sold today ÷ daily mean of the prior 28 days
--   products_sold_ratio    distinct products sold today ÷ their daily mean
--   sales_up_share         share of today's products sold above mean + 2·√mean + 1
--   purchase_ratio         packages bought today ÷ daily mean of the prior 28 days
--   production_ratio       packages produced today ÷ daily mean of the prior 28 days
--   purchase_sales_7d      packages bought ÷ packages sold over the last 7 days
--   price_vs_own           today's price ÷ own prior 28-day price, package-weighted
--   min_price_vs_own       the lowest such ratio among today's products
--   low_price_share        share of today's packages sold below 0.9 × own prior price
--   special_share          share of today's packages that are narcotic, psychotropic or
--                          ephedrine-containing (over sold + 5, so a quiet day's one
--                          package is not a 100 % share)
--   special_ratio          special packages today ÷ their daily mean
--   stock_gap_units        Σ |closing − (opening + inflow − sold)| over products with a
--                          closing snapshot (both days' reports present)
--   stock_gap_products     products with a non-zero gap
--   report_gap_days        days since the enterprise's previous report (within 28 days)
--
-- The 28-day baselines read the day tables `sales_daily`, `enterprise_flows` and
-- `inventory_days` (one row set per day, kept in the nightly job's day store), not the raw
-- sales, purchases, production and inventory of the window.
WITH sales_day AS (
    SELECT enterprise_id, product_id, biz_date, qty, price,
           CAST(round(price * 1000000.0) AS BIGINT) AS price_micro
    FROM sales_daily
    WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
),
judged_product AS (
    SELECT enterprise_id, product_id, biz_date, qty, price
    FROM sales_day WHERE biz_date BETWEEN ${from} AND ${to}
),
-- A judged product-day's baseline is the sum over its prior 28 days. Those windows all lie in
-- [${from} − 28, ${to} − 1]. The part of that union inside every judged day's window,
-- [${to} − 28, ${from} − 1], is summed once per enterprise × product (`product_middle`, an
-- aggregation, not a join that pairs every judged row with its 28 prior rows: the whole
-- baseline when one day is judged); the union's other days (its first and last when several
-- days are judged) are joined with the judged days whose windows hold them (`product_edge`),
-- so a run over n days pairs each judged row with n − 1 days of history. Every sum is exact:
-- packages are whole, prices are summed in millionths of a yuan, and so are the
-- package-weighted price ratios of `price_vs_own` below (in millionths of a package), so that
-- the features do not depend on how the rows were partitioned or on the run's range. A
-- product without prior sales has no baseline (NULL), as a sum over no rows is.
product_middle AS (
    SELECT enterprise_id, product_id, SUM(qty) AS qty, SUM(price_micro) AS price_micro,
           COUNT(qty) AS qty_days, COUNT(price) AS price_days
    FROM sales_day
    WHERE biz_date BETWEEN ${to} - INTERVAL '28 days' AND ${from} - INTERVAL '1 day'
    GROUP BY enterprise_id, product_id
),
product_edge AS (
    SELECT t.enterprise_id, t.product_id, t.biz_date, SUM(h.qty) AS qty,
           SUM(h.price_micro) AS price_micro, COUNT(h.qty) AS qty_days,
           COUNT(h.price) AS price_days
    FROM (SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '1 day' AS hi
          FROM judged_product) t
    JOIN (SELECT * FROM sales_day
          WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to} - INTERVAL '1 day'
            AND (biz_date < ${to} - INTERVAL '28 days' OR biz_date >= ${from})) h
      ON h.enterprise_id = t.enterprise_id AND h.product_id = t.product_id
     AND h.biz_date BETWEEN t.lo AND t.hi
    GROUP BY t.enterprise_id, t.product_id, t.biz_date
),
product_day AS (
    SELECT t.enterprise_id, t.product_id, t.biz_date, t.qty, t.price,
           CASE WHEN COALESCE(m.qty_days, 0) + COALESCE(e.qty_days, 0) > 0
                THEN (COALESCE(m.qty, 0) + COALESCE(e.qty, 0)) / 28.0 END AS base_qty,
           CASE WHEN COALESCE(m.price_days, 0) + COALESCE(e.price_days, 0) > 0
                THEN CAST(COALESCE(m.price_micro, 0) + COALESCE(e.price_micro, 0) AS DOUBLE)
                     / 1000000.0 / (COALESCE(m.price_days, 0) + COALESCE(e.price_days, 0))
           END AS base_price,
           COALESCE(m.qty_days, 0) + COALESCE(e.qty_days, 0) AS base_days
    FROM judged_product t
    LEFT JOIN product_middle m
      ON m.enterprise_id = t.enterprise_id AND m.product_id = t.product_id
    LEFT JOIN product_edge e
      ON e.enterprise_id = t.enterprise_id AND e.product_id = t.product_id
     AND e.biz_date = t.biz_date
),
product_feat AS (
    SELECT enterprise_id, biz_date,
           CAST(SUM(CASE WHEN base_days >= 3
                         THEN CAST(round(qty * price / base_price * 1000000.0) AS BIGINT) END)
                AS DOUBLE) / 1000000.0
             / SUM(CASE WHEN base_days >= 3 THEN qty END) AS price_vs_own,
           MIN(CASE WHEN base_days >= 3 THEN price / base_price END) AS min_price_vs_own,
           SUM(CASE WHEN base_days >= 3 AND price < 0.9 * base_price THEN qty ELSE 0 END)
             / SUM(qty) AS low_price_share,
           CAST(SUM(CASE WHEN qty > base_qty + 2.0 * sqrt(base_qty) + 1.0 THEN 1 ELSE 0 END) AS DOUBLE)
             / COUNT(*) AS sales_up_share
    FROM product_day
    WHERE biz_date BETWEEN ${from} AND ${to}
    GROUP BY enterprise_id, biz_date
),
ent_flows AS (
    SELECT enterprise_id, biz_date, sold, bought, produced, special, products
    FROM enterprise_flows
    WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
),
-- Each judged day with the enterprise's prior 28 days (`h` before the day) and its last 7
-- days (the day included).
ent_base AS (
    SELECT t.enterprise_id, t.biz_date, t.sold, t.bought, t.produced, t.special, t.products,
           SUM(CASE WHEN h.biz_date < t.biz_date THEN h.sold END) / 28.0 AS base_sold,
           SUM(CASE WHEN h.biz_date < t.biz_date THEN h.bought END) / 28.0 AS base_bought,
           SUM(CASE WHEN h.biz_date < t.biz_date THEN h.produced END) / 28.0 AS base_produced,
           SUM(CASE WHEN h.biz_date < t.biz_date THEN h.special END) / 28.0 AS base_special,
           SUM(CASE WHEN h.biz_date < t.biz_date THEN h.products END) / 28.0 AS base_products,
           SUM(CASE WHEN h.biz_date >= t.week THEN h.sold END) AS sold_7d,
           SUM(CASE WHEN h.biz_date >= t.week THEN h.bought END) AS bought_7d
    FROM (SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '6 days' AS week
          FROM ent_flows WHERE biz_date BETWEEN ${from} AND ${to}) t
    JOIN ent_flows h
      ON h.enterprise_id = t.enterprise_id
     AND h.biz_date BETWEEN t.lo AND t.biz_date
    GROUP BY t.enterprise_id, t.biz_date, t.sold, t.bought, t.produced, t.special, t.products
),
-- The stock gap of each enterprise × product × day with a closing snapshot: one aggregation
-- over the day's flows, its snapshots (the closing) and the day before's shifted a day on (the
-- opening), as in `indicators/inventory.sql`; judged where both days' reports are present.
reported AS (
    SELECT DISTINCT enterprise_id, biz_date
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '1 day' AND ${to}
),
stock_rows AS (
    SELECT enterprise_id, product_id, biz_date, quantity AS sold, 0 AS inflow,
           CAST(NULL AS BIGINT) AS opening, CAST(NULL AS BIGINT) AS closing
    FROM sales WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, quantity, NULL, NULL
    FROM purchase WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, quantity, NULL, NULL
    FROM production WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, 0, NULL, quantity
    FROM inventory WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, CAST(biz_date + INTERVAL '1 day' AS DATE), NULL, NULL, quantity, NULL
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '1 day' AND ${to} - INTERVAL '1 day'
),
stock AS (
    SELECT enterprise_id, product_id, biz_date,
           SUM(closing) - (COALESCE(SUM(opening), 0) + COALESCE(SUM(inflow), 0)
                           - COALESCE(SUM(sold), 0)) AS gap
    FROM stock_rows
    GROUP BY enterprise_id, product_id, biz_date
    HAVING COUNT(closing) > 0
),
gaps AS (
    SELECT s.enterprise_id, s.biz_date,
           CAST(SUM(abs(s.gap)) AS DOUBLE) AS gap_units,
           CAST(SUM(CASE WHEN s.gap <> 0 THEN 1 ELSE 0 END) AS DOUBLE) AS gap_products
    FROM stock s
    JOIN reported ry ON ry.enterprise_id = s.enterprise_id AND ry.biz_date = s.biz_date - INTERVAL '1 day'
    JOIN reported rt ON rt.enterprise_id = s.enterprise_id AND rt.biz_date = s.biz_date
    GROUP BY s.enterprise_id, s.biz_date
),
activity AS (
    SELECT enterprise_id, biz_date FROM ent_flows
    UNION
    SELECT enterprise_id, biz_date FROM inventory_days
    WHERE biz_date BETWEEN ${from} - INTERVAL '28 days' AND ${to}
),
-- The previous report within the 28 days before: a day's gap is its own (whatever the run's
-- range); none within them reads as typical, as a missing basis does everywhere here.
report_gap AS (
    SELECT t.enterprise_id, t.biz_date, CAST(t.biz_date - MAX(h.biz_date) AS DOUBLE) AS gap
    FROM (SELECT *, biz_date - INTERVAL '28 days' AS lo, biz_date - INTERVAL '1 day' AS hi
          FROM activity WHERE biz_date BETWEEN ${from} AND ${to}) t
    LEFT JOIN activity h
      ON h.enterprise_id = t.enterprise_id
     AND h.biz_date BETWEEN t.lo AND t.hi
    GROUP BY t.enterprise_id, t.biz_date
)
SELECT a.enterprise_id,
       a.biz_date,
       CASE WHEN e.enterprise_type IN ('chain_store', 'single_pharmacy') THEN 'pharmacy'
            WHEN e.enterprise_type IN ('wholesaler', 'chain_hq') THEN 'wholesale'
            ELSE 'manufacturer' END AS segment,
       greatest((COALESCE(b.sold, 0) + 1.0) / (COALESCE(b.base_sold, 0) + 1.0), 1.0) AS sales_ratio,
       greatest((COALESCE(b.products, 0) + 1.0) / (COALESCE(b.base_products, 0) + 1.0), 1.0) AS products_sold_ratio,
       pf.sales_up_share AS sales_up_share,
       greatest((COALESCE(b.bought, 0) + 1.0) / (COALESCE(b.base_bought, 0) + 1.0), 1.0) AS purchase_ratio,
       greatest((COALESCE(b.produced, 0) + 1.0) / (COALESCE(b.base_produced, 0) + 1.0), 1.0) AS production_ratio,
       (COALESCE(b.bought_7d, 0) + 1.0) / (COALESCE(b.sold_7d, 0) + 1.0) AS purchase_sales_7d,
       least(pf.price_vs_own, 1.0) AS price_vs_own,
       least(pf.min_price_vs_own, 1.0) AS min_price_vs_own,
       pf.low_price_share AS low_price_share,
       COALESCE(b.special, 0) / (COALESCE(b.sold, 0) + 5.0) AS special_share,
       greatest((COALESCE(b.special, 0) + 1.0) / (COALESCE(b.base_special, 0) + 1.0), 1.0) AS special_ratio,
       g.gap_units AS stock_gap_units,
       g.gap_products AS stock_gap_products,
       COALESCE(r.gap, 1.0) AS report_gap_days
FROM activity a
JOIN enterprises e ON e.enterprise_id = a.enterprise_id
LEFT JOIN ent_base b ON b.enterprise_id = a.enterprise_id AND b.biz_date = a.biz_date
LEFT JOIN product_feat pf ON pf.enterprise_id = a.enterprise_id AND pf.biz_date = a.biz_date
LEFT JOIN gaps g ON g.enterprise_id = a.enterprise_id AND g.biz_date = a.biz_date
LEFT JOIN report_gap r ON r.enterprise_id = a.enterprise_id AND r.biz_date = a.biz_date
WHERE a.biz_date BETWEEN ${from} AND ${to}
ORDER BY a.enterprise_id, a.biz_date
