-- Store schema version 3: the stream's per-record tables keyed by text become WITHOUT ROWID
-- tables. Each of them is looked up and written by its primary key only; as rowid tables
-- every insert wrote two B-trees (the table and its primary-key index), now it writes one,
-- clustered on the key. Same columns, same keys, rows copied as they are.
CREATE TABLE stream_windows_v3 (
    partition INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    sold INTEGER NOT NULL,
    retail REAL NOT NULL,
    inflow INTEGER NOT NULL,
    closing INTEGER,
    surge_fired INTEGER NOT NULL,
    PRIMARY KEY (partition, enterprise_id, product_id, biz_date)
) WITHOUT ROWID;
INSERT INTO stream_windows_v3 SELECT partition, enterprise_id, product_id, biz_date, sold,
    retail, inflow, closing, surge_fired FROM stream_windows;
DROP TABLE stream_windows;
ALTER TABLE stream_windows_v3 RENAME TO stream_windows;

CREATE TABLE stream_reported_v3 (
    partition INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    PRIMARY KEY (partition, enterprise_id, biz_date)
) WITHOUT ROWID;
INSERT INTO stream_reported_v3 SELECT partition, enterprise_id, biz_date FROM stream_reported;
DROP TABLE stream_reported;
ALTER TABLE stream_reported_v3 RENAME TO stream_reported;

CREATE TABLE stream_batch_sales_v3 (
    partition INTEGER NOT NULL,
    product_id TEXT NOT NULL,
    batch_no TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (partition, product_id, batch_no, enterprise_id, biz_date)
) WITHOUT ROWID;
INSERT INTO stream_batch_sales_v3 SELECT partition, product_id, batch_no, enterprise_id,
    biz_date, quantity FROM stream_batch_sales;
DROP TABLE stream_batch_sales;
ALTER TABLE stream_batch_sales_v3 RENAME TO stream_batch_sales;

CREATE TABLE trace_codes_v3 (
    trace_code TEXT PRIMARY KEY,
    event_time_ms INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    biz_date TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO trace_codes_v3 SELECT trace_code, event_time_ms, event_id, enterprise_id,
    product_id, biz_date FROM trace_codes;
DROP TABLE trace_codes;
ALTER TABLE trace_codes_v3 RENAME TO trace_codes;
