-- Store schema version 51: a partition's sales per batch (what a failing test found later is
-- judged against) are kept in the enterprise-day row of its window sets, as a JSON array
-- `[[product_id, batch_no, quantity], ...]` sorted by product and batch, instead of one row per
-- product × batch × enterprise × day in stream_batch_sales. A micro-batch already rewrites the
-- row of every enterprise-day it touched; its sales now cost no rows of their own (on a
-- database server, tens of thousands of upserts per micro-batch fewer). Both are kept for the
-- same 29 days. The rows of stream_batch_sales move into the new column, then it is dropped.
ALTER TABLE stream_window_sets ADD COLUMN batches TEXT NOT NULL DEFAULT '[]';
INSERT INTO stream_window_sets (partition, biz_date, enterprise_id, windows)
SELECT DISTINCT b.partition, b.biz_date, b.enterprise_id, '[]'
FROM stream_batch_sales b
WHERE NOT EXISTS (
    SELECT 1 FROM stream_window_sets w
    WHERE w.partition = b.partition AND w.biz_date = b.biz_date
      AND w.enterprise_id = b.enterprise_id);
UPDATE stream_window_sets SET batches = (
    SELECT json_group_array(json_array(product_id, batch_no, quantity))
    FROM (SELECT product_id, batch_no, quantity FROM stream_batch_sales b
          WHERE b.partition = stream_window_sets.partition
            AND b.biz_date = stream_window_sets.biz_date
            AND b.enterprise_id = stream_window_sets.enterprise_id
          ORDER BY product_id, batch_no))
WHERE EXISTS (
    SELECT 1 FROM stream_batch_sales b
    WHERE b.partition = stream_window_sets.partition AND b.biz_date = stream_window_sets.biz_date
      AND b.enterprise_id = stream_window_sets.enterprise_id);
DROP TABLE stream_batch_sales;
