-- PostgreSQL form of store schema version 2 (../002_stream_seeded.sql).
--
-- stream_seeded  baselines whose first trace-code sales are already in trace_codes, so a
--                restart of the stream service with the same nightly baseline does not read
--                and insert them again.
--   baseline    directory | last day | rule version | size of trace_codes.parquet
--   rows        trace codes read from it
CREATE TABLE IF NOT EXISTS stream_seeded (
    baseline TEXT PRIMARY KEY,
    rows BIGINT NOT NULL,
    seeded_at TEXT NOT NULL
);
