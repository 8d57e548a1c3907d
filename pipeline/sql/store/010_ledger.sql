-- Store schema version 10: the case ledger (案件台账) and the issued documents.
--
-- cases          one row per case: the enterprise, where it came from (an inspection finding or
--                a nightly risk-list row), its status (open / closed) and the risk-list evidence
--                the notices state as facts, and the addressee (credit code, licence, lead)
-- case_measures  the measures of a case, one per measure code, with the article and the due
--                date; `state` moves open → reported → done, or open → overdue (a later
--                decision for the same code, e.g. a new deadline after an escalation, replaces
--                the row: the history is in case_events)
-- case_events    the audit trail: append-only (the triggers below refuse UPDATE and DELETE);
--                each event has its business date, actor and wall-clock recording time
-- list_entries   the low-risk (低风险名单), key-monitoring (重点监控名单) and fault-tolerance
--                (容错清单) lists, one entry per list × case
-- documents      every issued document with its number: per series (authority + document kind,
--                e.g. 蒙药监告) and year, seq runs 1, 2, 3 … without gaps; the number is taken in
--                the same IMMEDIATE transaction that appends the notice_issued event, and the
--                rendered text is kept so that a lost file can be written again
--
-- Portability: plain types (TEXT dates as YYYY-MM-DD, INTEGER flags) so that PostgreSQL can
-- follow; only the triggers' bodies and `INTEGER PRIMARY KEY` (an identity column there) are
-- SQLite dialect.
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL,
    enterprise_name TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL CHECK (origin IN ('finding', 'risk_list')),
    opened_on TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    closed_on TEXT,
    compliance_commitment INTEGER NOT NULL DEFAULT 0,
    first_minor INTEGER NOT NULL DEFAULT 0,
    facts_json TEXT NOT NULL DEFAULT '[]',
    addressee_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS cases_enterprise ON cases (enterprise_id, status);

CREATE TABLE IF NOT EXISTS case_measures (
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    code TEXT NOT NULL,
    article TEXT NOT NULL,
    due_date TEXT,
    detail TEXT,
    state TEXT NOT NULL CHECK (state IN ('open', 'reported', 'done', 'overdue')),
    decided_on TEXT NOT NULL,
    PRIMARY KEY (case_id, code)
);

CREATE TABLE IF NOT EXISTS case_events (
    event_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    event TEXT NOT NULL CHECK (event IN (
        'opened', 'measures_decided', 'notice_issued', 'delivered', 'report_received',
        'verified', 'resume_requested', 'lifted', 'overdue', 'escalated', 'listed', 'closed')),
    event_date TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    document_no TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, event_id);
CREATE TRIGGER IF NOT EXISTS case_events_no_update BEFORE UPDATE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never edited');
END;
CREATE TRIGGER IF NOT EXISTS case_events_no_delete BEFORE DELETE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never deleted');
END;

CREATE TABLE IF NOT EXISTS list_entries (
    list_name TEXT NOT NULL CHECK (list_name IN ('low_risk', 'key_monitoring', 'fault_tolerance')),
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    enterprise_id TEXT NOT NULL,
    entered_on TEXT NOT NULL,
    article TEXT NOT NULL,
    until_date TEXT,
    PRIMARY KEY (list_name, case_id)
);

CREATE TABLE IF NOT EXISTS documents (
    series TEXT NOT NULL,
    year INTEGER NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    number TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    issued_on TEXT NOT NULL,
    html TEXT NOT NULL,
    markdown TEXT NOT NULL,
    PRIMARY KEY (series, year, seq)
);
CREATE TRIGGER IF NOT EXISTS documents_no_delete BEFORE DELETE ON documents
BEGIN
    SELECT RAISE(ABORT, 'documents are never deleted: their numbers must stay without gaps');
END;
