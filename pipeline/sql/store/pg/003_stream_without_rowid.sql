-- PostgreSQL form of store schema version 3 (../003_stream_without_rowid.sql): a documented
-- no-op.
--
-- On SQLite this version rebuilds stream_windows, stream_reported, stream_batch_sales and
-- trace_codes as WITHOUT ROWID tables (same columns, same keys, rows copied). PostgreSQL has
-- no rowid tables: version 1 already created them as ordinary tables with the same columns
-- and primary keys, which is their final form, so there is nothing to do here. The version
-- is kept so that both backends record the same list of versions.
SELECT 1;
