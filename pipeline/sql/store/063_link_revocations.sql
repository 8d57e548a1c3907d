-- Store schema version 63: the links of one document (or one risk warning) can be revoked.
--
-- link_revocations  one row per revoked subject: `subject` is the document number, or
--                   `risk:<event id>` for a risk warning (the subject a link's claims name);
--                   a link of it issued at or before `revoked_before` (Unix seconds) is refused
--                   as gone (410); links sent after it work. Revoking again moves
--                   `revoked_before` on; the audit trail keeps every revocation.
CREATE TABLE IF NOT EXISTS link_revocations (
    subject TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    revoked_before INTEGER NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (length(trim(reason)) > 0)
);
