-- Store schema version 50: the person in the loop — drafts approved by a person before a
-- number is taken, the accounts and sessions of the workbench, the triage of the risk list,
-- the case workbench (assignment, comments, attachments) and the audit trail of every action.
--
-- drafts          one row per proposed document: the nightly job (or an event such as lifting)
--                 proposes, an inspector edits and submits, an approver approves or returns it.
--                 `state` moves proposed → submitted → approved, submitted → returned →
--                 submitted …, or to withdrawn. The number is taken only on approval, in the
--                 transaction that stores the document (documents, migration 10) and marks the
--                 draft approved; the approver is never the inspector who submitted it.
-- audit_trail     every action of every user (and of the nightly job) with who, in which role,
--                 when, what and on what: append-only (the triggers refuse UPDATE and DELETE).
-- accounts        local accounts: argon2id password hash (PHC string), role, the regions of
--                 an inspector (comma-separated GB/T 2260 codes), the enterprise of a lead.
-- sessions        server-side sessions: only the SHA-256 of the session id is stored, with the
--                 CSRF token of the session; a new session is made at every sign-in (no
--                 session fixation) and removed at sign-out.
-- api_tokens      tokens of systems (the platform), stored as SHA-256, acting as an account.
-- dispositions    the triage of risk-list rows: confirm (a case is opened), dismiss with a
--                 reason, watch. One current disposition per list row; the history is in the
--                 audit trail. They are the labels `pharmwatch evaluate` scores a list against.
-- case_comments   comments on a case, append-only.
-- attachments     files on a case (rectification reports, photos): content-addressed by
--                 SHA-256 under the attachment directory; size and type checked on upload.
--
-- documents gain the authority they were issued under (so every page about a document names
-- the authority that signed it) and the approver; cases gain the region that scopes them to a
-- jurisdiction and the inspector they are assigned to.
-- risk_list rows keep the whole row (licence, credit grade, the model's reasons) for triage.
ALTER TABLE risk_list ADD COLUMN row_json TEXT NOT NULL DEFAULT '';
ALTER TABLE documents ADD COLUMN authority_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE documents ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN region_code TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN assignee TEXT NOT NULL DEFAULT '';

CREATE TABLE IF NOT EXISTS drafts (
    draft_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('proposed', 'submitted', 'approved', 'returned',
                                         'withdrawn')),
    proposed_on TEXT NOT NULL,
    proposed_by TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    excluded_items TEXT NOT NULL DEFAULT '[]',
    edited_by TEXT NOT NULL DEFAULT '',
    submitted_by TEXT NOT NULL DEFAULT '',
    submitted_at TEXT,
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at TEXT,
    return_reason TEXT NOT NULL DEFAULT '',
    document_no TEXT REFERENCES documents (number),
    CHECK ((state = 'approved') = (document_no IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS drafts_state ON drafts (state, draft_id);
CREATE INDEX IF NOT EXISTS drafts_case ON drafts (case_id);
-- At most one live draft per case and kind.
CREATE UNIQUE INDEX IF NOT EXISTS drafts_live ON drafts (case_id, kind)
    WHERE state IN ('proposed', 'submitted', 'returned');

CREATE TABLE IF NOT EXISTS audit_trail (
    audit_id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    case_id TEXT,
    enterprise_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_trail_case ON audit_trail (case_id, audit_id);
CREATE INDEX IF NOT EXISTS audit_trail_actor ON audit_trail (actor, audit_id);
CREATE TRIGGER IF NOT EXISTS audit_trail_no_update BEFORE UPDATE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only: entries are never edited');
END;
CREATE TRIGGER IF NOT EXISTS audit_trail_no_delete BEFORE DELETE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only: entries are never deleted');
END;

CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('province_supervisor', 'inspector', 'approver',
                                       'enterprise_lead', 'auditor')),
    regions TEXT NOT NULL DEFAULT '',
    enterprise_id TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    CHECK ((role = 'enterprise_lead') = (enterprise_id <> '')),
    CHECK (role <> 'inspector' OR regions <> '')
);

CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts (username),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (username);

CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts (username),
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS dispositions (
    list_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    disposition TEXT NOT NULL CHECK (disposition IN ('confirmed', 'dismissed', 'watch')),
    reason TEXT NOT NULL DEFAULT '',
    case_id TEXT,
    decided_by TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    PRIMARY KEY (list_id, enterprise_id),
    CHECK (disposition <> 'dismissed' OR reason <> '')
);

CREATE TABLE IF NOT EXISTS case_comments (
    comment_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS case_comments_case ON case_comments (case_id, comment_id);
CREATE TRIGGER IF NOT EXISTS case_comments_no_update BEFORE UPDATE ON case_comments
BEGIN
    SELECT RAISE(ABORT, 'case_comments is append-only');
END;

CREATE TABLE IF NOT EXISTS attachments (
    attachment_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('rectification_report', 'evidence', 'other')),
    uploaded_by TEXT NOT NULL,
    uploaded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_case ON attachments (case_id, attachment_id);

-- warning_policy  the real-time warning policy: the (indicator, grade) pairs whose risk events
--                 stay with the supervisors — no warning is queued to the enterprise. By
--                 default the signals of diversion (sold without purchase, purchase surges),
--                 of special-management drugs and of duplicated traceability codes (whose
--                 evidence names another enterprise) stay with the supervisors at every grade;
--                 `[delivery.warnings]` of the configuration replaces the rows
--                 (pharmwatch_delivery::policy). The outbox trigger reads it in the stream's
--                 own transaction.
CREATE TABLE IF NOT EXISTS warning_policy (
    indicator TEXT NOT NULL,
    grade TEXT NOT NULL CHECK (grade IN ('A', 'B', 'C', 'D')),
    PRIMARY KEY (indicator, grade)
);
INSERT OR IGNORE INTO warning_policy (indicator, grade)
SELECT i.indicator, g.grade
FROM (SELECT 'sold_not_bought' AS indicator UNION ALL SELECT 'purchase_spike'
      UNION ALL SELECT 'special_drug_volume' UNION ALL SELECT 'trace_code_duplicate') i
CROSS JOIN (SELECT 'A' AS grade UNION ALL SELECT 'B' UNION ALL SELECT 'C' UNION ALL SELECT 'D') g;
DROP TRIGGER IF EXISTS risk_events_outbox;
CREATE TRIGGER IF NOT EXISTS risk_events_outbox AFTER INSERT ON risk_events
WHEN NOT EXISTS (SELECT 1 FROM warning_policy p
                 WHERE p.indicator = NEW.indicator AND p.grade = NEW.grade)
BEGIN
    INSERT INTO deliveries (idempotency_key, kind, enterprise_id, risk_event_id, created_at,
                            next_attempt_at)
    VALUES ('risk-' || NEW.id, 'risk_warning', NEW.enterprise_id, NEW.id,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
