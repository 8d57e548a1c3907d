-- Sales of batches that may not be sold (劣药 / 不合格):
-- expired_batch_sold: the business day of the sale is after the batch's expiry date;
-- failed_batch_sold:  the batch failed a test on or before the day of the sale, or was never
--                     released.
-- One hit per enterprise × product × day × batch; observed = packages sold, expected = 0.
WITH s AS (
    SELECT enterprise_id, product_id, batch_no, biz_date, SUM(quantity) AS qty
    FROM sales WHERE biz_date BETWEEN ${from} AND ${to}
    GROUP BY enterprise_id, product_id, batch_no, biz_date
),
failed AS (
    SELECT product_id, batch_no, MIN(biz_date) AS failed_on
    FROM product_test WHERE result = 'fail' AND biz_date <= ${to}
    GROUP BY product_id, batch_no
)
SELECT s.enterprise_id, s.product_id, s.biz_date,
       'expired_batch_sold' AS indicator,
       b.expiry_date AS window_start,
       s.biz_date AS window_end,
       CAST(s.qty AS DOUBLE) AS observed,
       0.0 AS expected,
       concat('batch=', s.batch_no, ';expiry=', CAST(b.expiry_date AS VARCHAR)) AS detail
FROM s JOIN batches b ON b.product_id = s.product_id AND b.batch_no = s.batch_no
WHERE s.biz_date > b.expiry_date
UNION ALL
SELECT s.enterprise_id, s.product_id, s.biz_date,
       'failed_batch_sold' AS indicator,
       CASE WHEN f.failed_on <= s.biz_date THEN f.failed_on ELSE s.biz_date END AS window_start,
       s.biz_date AS window_end,
       CAST(s.qty AS DOUBLE) AS observed,
       0.0 AS expected,
       CASE WHEN f.failed_on <= s.biz_date
            THEN concat('batch=', s.batch_no, ';failed_on=', CAST(f.failed_on AS VARCHAR))
            ELSE concat('batch=', s.batch_no, ';not_released') END AS detail
FROM s
LEFT JOIN failed f ON f.product_id = s.product_id AND f.batch_no = s.batch_no
LEFT JOIN batches b ON b.product_id = s.product_id AND b.batch_no = s.batch_no
WHERE (f.failed_on IS NOT NULL AND s.biz_date >= f.failed_on)
   OR b.released = false
