-- Window deltas of one micro-batch: per enterprise × product × business day, what the batch
-- adds to the stream's window state. The state (see `stream::state`) sums the deltas, so a
-- day is never rescanned: sold and inflow are the terms of the reconciliation in
-- `inventory.sql`, retail the input of the special-drug surge in `retail_spike.sql`, closing
-- the day's inventory snapshot (NULL when the batch holds none).
WITH flows AS (
    SELECT enterprise_id, product_id, biz_date, quantity AS sold,
           CASE WHEN buyer_id IS NULL THEN CAST(quantity AS DOUBLE) ELSE 0.0 END AS retail,
           0 AS inflow, CAST(NULL AS BIGINT) AS closing
    FROM sales
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, 0.0, quantity, CAST(NULL AS BIGINT) FROM purchase
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, 0.0, quantity, CAST(NULL AS BIGINT) FROM production
    UNION ALL
    SELECT enterprise_id, product_id, biz_date, 0, 0.0, 0, quantity FROM inventory
)
SELECT enterprise_id, product_id, biz_date,
       CAST(SUM(sold) AS BIGINT) AS sold,
       CAST(SUM(retail) AS DOUBLE) AS retail,
       CAST(SUM(inflow) AS BIGINT) AS inflow,
       CAST(SUM(closing) AS BIGINT) AS closing
FROM flows
GROUP BY enterprise_id, product_id, biz_date
