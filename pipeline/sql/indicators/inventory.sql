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
-- One aggregation per enterprise × product × day over the day's flows, its snapshots (the
-- closing) and the day before's snapshots shifted a day on (the opening), instead of a join per
-- part: the groups with a flow or a closing of their own are the ones judged.
WITH rows AS (
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
keyed AS (
    SELECT enterprise_id, product_id, biz_date,
           COALESCE(SUM(sold), 0) AS sold,
           COALESCE(SUM(inflow), 0) AS inflow,
           COALESCE(SUM(opening), 0) AS opening,
           COUNT(opening) > 0 AS counted,
           SUM(closing) AS closing,
           COUNT(sold) AS own
    FROM rows
    GROUP BY enterprise_id, product_id, biz_date
),
reported AS (
    SELECT DISTINCT enterprise_id, biz_date
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '1 day' AND ${to}
),
judged AS (
    SELECT k.enterprise_id, k.product_id, k.biz_date, k.sold, k.inflow, k.opening, k.counted, k.closing
    FROM keyed k
    JOIN reported ry ON ry.enterprise_id = k.enterprise_id AND ry.biz_date = k.biz_date - INTERVAL '1 day'
    JOIN reported rt ON rt.enterprise_id = k.enterprise_id AND rt.biz_date = k.biz_date
    WHERE k.own > 0
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
