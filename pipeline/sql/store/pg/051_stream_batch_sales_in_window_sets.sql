-- PostgreSQL form of store schema version 51 (../051_stream_batch_sales_in_window_sets.sql): a
-- partition's sales per batch move into the enterprise-day rows of stream_window_sets (column
-- `batches`, a JSON array `[[product_id, batch_no, quantity], ...]` sorted by product and
-- batch); stream_batch_sales is dropped.
ALTER TABLE stream_window_sets ADD COLUMN batches TEXT NOT NULL DEFAULT '[]';
INSERT INTO stream_window_sets (partition, biz_date, enterprise_id, windows)
SELECT DISTINCT b.partition, b.biz_date, b.enterprise_id, '[]'
FROM stream_batch_sales b
WHERE NOT EXISTS (
    SELECT 1 FROM stream_window_sets w
    WHERE w.partition = b.partition AND w.biz_date = b.biz_date
      AND w.enterprise_id = b.enterprise_id);
UPDATE stream_window_sets w SET batches = b.batches
FROM (SELECT partition, biz_date, enterprise_id,
             json_agg(json_build_array(product_id, batch_no, quantity)
                      ORDER BY product_id, batch_no)::text AS batches
      FROM stream_batch_sales
      GROUP BY partition, biz_date, enterprise_id) b
WHERE w.partition = b.partition AND w.biz_date = b.biz_date AND w.enterprise_id = b.enterprise_id;
DROP TABLE stream_batch_sales;
