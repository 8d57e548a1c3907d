-- PostgreSQL form of store schema version 4 (../004_stream_window_sets.sql): the stream's
-- window state is kept as one row per partition × business day × enterprise, its windows (one
-- per product) in a JSON array `[[product_id, sold, retail, inflow, closing, surge_fired], ...]`
-- sorted by product; stream_windows (version 1) is dropped.
--
-- A PostgreSQL store starts empty, so stream_windows has no rows here; the copy below is kept
-- only so that the version means the same on both backends (PostgreSQL's JSON text differs
-- from SQLite's in spacing and writes a whole real without ".0": the same JSON values).
-- Applying the file again is harmless: the copy conflicts with nothing and the drop finds the
-- table that version 1 made again (or none).
CREATE TABLE IF NOT EXISTS stream_window_sets (
    partition BIGINT NOT NULL,
    biz_date TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    windows TEXT NOT NULL,
    PRIMARY KEY (partition, biz_date, enterprise_id)
);
DO $$
BEGIN
    IF to_regclass('stream_windows') IS NOT NULL THEN
        INSERT INTO stream_window_sets (partition, biz_date, enterprise_id, windows)
        SELECT partition, biz_date, enterprise_id,
               json_agg(json_build_array(product_id, sold, retail, inflow, closing, surge_fired)
                        ORDER BY product_id COLLATE "C")::text
        FROM stream_windows
        GROUP BY partition, biz_date, enterprise_id
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;
DROP TABLE IF EXISTS stream_windows;
