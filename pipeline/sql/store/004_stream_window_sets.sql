-- Store schema version 4: the stream's window state is kept as one row per partition ×
-- business day × enterprise, its windows (one per product) in a JSON array
-- `[[product_id, sold, retail, inflow, closing, surge_fired], ...]` sorted by product. A
-- micro-batch rewrites the rows of the enterprise-days it touched: a few hundred rows where
-- there were tens of thousands (one per product), each bounded by the enterprise's products
-- of one day. `SELECT ... FROM stream_window_sets, json_each(windows)` reads it row by row.
CREATE TABLE stream_window_sets (
    partition INTEGER NOT NULL,
    biz_date TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    windows TEXT NOT NULL,
    PRIMARY KEY (partition, biz_date, enterprise_id)
) WITHOUT ROWID;
INSERT INTO stream_window_sets
SELECT partition, biz_date, enterprise_id,
       json_group_array(json_array(product_id, sold, retail, inflow, closing, surge_fired))
FROM (SELECT * FROM stream_windows ORDER BY partition, biz_date, enterprise_id, product_id)
GROUP BY partition, biz_date, enterprise_id;
DROP TABLE stream_windows;
