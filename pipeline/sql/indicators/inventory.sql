-- Reconciliation per enterprise × product × business day (账实不符 / 购销不符).
--
-- available = opening stock (yesterday's closing snapshot) + purchases + production
-- expected closing = available − sales
-- sold_not_bought:    sales > available (product sold that was never bought or held); where
--                     yesterday's count of the product exists, by ≥ ${sold_excess_min} packages
--                     (a count of one or two too few is a stocktake miscount, not illegal sourcing)
-- inventory_mismatch: |closing − expected closing| ≥ max(${mismatch_min}, ${mismatch_share} × available)
-- Only enterprise-days with a snapshot report both today and yesterday are judged: a missing
-- report is the reporting indicator's business, not a stock gap. A product without a snapshot
-- yesterday (never held) opens at 0.
WITH flows AS (
    SELECT enterprise_id, product_id, biz_date, quantity AS sold, 0 AS bought, 0 AS produced
    FROM sales WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, quantity, 0
    FROM purchase WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, 0, quantity
    FROM production WHERE biz_date BETWEEN ${from} AND ${to}
),
day_flows AS (
    SELECT enterprise_id, product_id, biz_date,
           SUM(sold) AS sold, SUM(bought) AS bought, SUM(produced) AS produced
    FROM flows GROUP BY enterprise_id, product_id, biz_date
),
snap AS (
    SELECT enterprise_id, product_id, biz_date, SUM(quantity) AS qty
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '1 day' AND ${to}
    GROUP BY enterprise_id, product_id, biz_date
),
reported AS (
    SELECT DISTINCT enterprise_id, biz_date
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '1 day' AND ${to}
),
keyed AS (
    SELECT enterprise_id, product_id, biz_date FROM day_flows
    UNION
    SELECT enterprise_id, product_id, biz_date FROM snap WHERE biz_date >= ${from}
),
judged AS (
    SELECT k.enterprise_id, k.product_id, k.biz_date,
           COALESCE(f.sold, 0) AS sold,
           COALESCE(f.bought, 0) + COALESCE(f.produced, 0) AS inflow,
           COALESCE(o.qty, 0) AS opening,
           o.qty IS NOT NULL AS counted,
           c.qty AS closing
    FROM keyed k
    JOIN reported ry ON ry.enterprise_id = k.enterprise_id AND ry.biz_date = k.biz_date - INTERVAL '1 day'
    JOIN reported rt ON rt.enterprise_id = k.enterprise_id AND rt.biz_date = k.biz_date
    LEFT JOIN day_flows f
        ON f.enterprise_id = k.enterprise_id AND f.product_id = k.product_id AND f.biz_date = k.biz_date
    LEFT JOIN snap o
        ON o.enterprise_id = k.enterprise_id AND o.product_id = k.product_id
       AND o.biz_date = k.biz_date - INTERVAL '1 day'
    LEFT JOIN snap c
        ON c.enterprise_id = k.enterprise_id AND c.product_id = k.product_id AND c.biz_date = k.biz_date
)
SELECT enterprise_id,
       product_id,
       biz_date,
       CASE WHEN oversold THEN 'sold_not_bought' ELSE 'inventory_mismatch' END AS indicator,
       biz_date AS window_start,
       biz_date AS window_end,
       CAST(CASE WHEN oversold THEN sold ELSE closing END AS DOUBLE) AS observed,
       CAST(CASE WHEN oversold THEN opening + inflow ELSE opening + inflow - sold END AS DOUBLE) AS expected,
       concat('opening=', CAST(opening AS VARCHAR), ';inflow=', CAST(inflow AS VARCHAR),
              ';sold=', CAST(sold AS VARCHAR)) AS detail
FROM (
    SELECT *,
           sold > opening + inflow
           AND (NOT counted OR sold - (opening + inflow) >= ${sold_excess_min}) AS oversold
    FROM judged
) j
WHERE oversold
   OR (closing IS NOT NULL
       AND abs(closing - (opening + inflow - sold))
           >= greatest(CAST(${mismatch_min} AS DOUBLE), ${mismatch_share} * (opening + inflow)))
