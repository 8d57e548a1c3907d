-- Store schema version 60: credit repair (信用修复) and the penalty procedure in the case
-- trail.
--
-- case_events     the events credit_repair_applied, credit_repair_reviewed,
--                 credit_repair_granted and credit_repair_refused, and the stages of a referred
--                 case's penalty procedure (penalty_filed, penalty_notice_served,
--                 hearing_requested, clock_stopped, clock_resumed, extension_granted,
--                 penalty_decided, penalty_decision_served) join the list of the CHECK
--                 constraint: an enterprise's application, the inspector's review and the
--                 approver's grant or refusal are events of the case, append-only like the
--                 others. SQLite cannot change a CHECK in place and rebuilds the table (rows,
--                 ids, index and append-only triggers unchanged).
DROP TRIGGER IF EXISTS case_events_no_update;
DROP TRIGGER IF EXISTS case_events_no_delete;
CREATE TABLE case_events_v60 (
    event_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    event TEXT NOT NULL CHECK (event IN (
        'opened', 'measures_decided', 'notice_issued', 'delivered', 'report_received',
        'verified', 'resume_requested', 'lifted', 'overdue', 'escalated', 'listed', 'closed',
        'deadline_set', 'deadline_changed', 'credit_repair_applied', 'credit_repair_reviewed',
        'credit_repair_granted', 'credit_repair_refused', 'penalty_filed',
        'penalty_notice_served', 'hearing_requested', 'clock_stopped', 'clock_resumed',
        'extension_granted', 'penalty_decided', 'penalty_decision_served')),
    event_date TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    document_no TEXT,
    recorded_at TEXT NOT NULL
);
INSERT INTO case_events_v60 (event_id, case_id, event, event_date, actor, note, document_no,
                             recorded_at)
    SELECT event_id, case_id, event, event_date, actor, note, document_no, recorded_at
    FROM case_events;
DROP TABLE case_events;
ALTER TABLE case_events_v60 RENAME TO case_events;
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, event_id);
CREATE TRIGGER IF NOT EXISTS case_events_no_update BEFORE UPDATE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never edited');
END;
CREATE TRIGGER IF NOT EXISTS case_events_no_delete BEFORE DELETE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never deleted');
END;
