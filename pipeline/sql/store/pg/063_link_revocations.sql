-- Store schema version 63: the links of one document (or one risk warning) can be revoked
-- (see the SQLite migration).
CREATE TABLE IF NOT EXISTS link_revocations (
    subject TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    revoked_before BIGINT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (length(trim(reason)) > 0)
);
