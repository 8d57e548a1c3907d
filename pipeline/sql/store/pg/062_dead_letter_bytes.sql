-- Store schema version 62: a dead letter keeps the exact bytes of a message that is not UTF-8
-- (see the SQLite migration).
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS raw_base64 TEXT;
