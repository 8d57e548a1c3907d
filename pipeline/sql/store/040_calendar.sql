-- Store schema version 40: working-day calendar years loaded by an operator, and deadlines
-- that wait for them.
--
-- calendar_years  one row per year loaded with `pharmwatch calendar import` (the State
--                 Council's notice, where it is published, the file it came from, who loaded it
--                 and when, and the year's working days as a check figure). Every process of a
--                 deployment reads these years on top of the ones built into the binary, so a
--                 year loaded once is seen by the nightly job, the measures engine and serve.
-- calendar_days   the listed days of those years (holiday_off / makeup_workday), as in the
--                 calendar CSV format.
-- case_measures   gains how each working-day deadline is counted (`due_counts_json`, a JSON
--                 array of {from, from_field, working_days}) and, while the due date runs past
--                 the covered years, the year it waits for (`due_pending_year`; NULL when the
--                 date is known or the measure has none). Loading that year computes the date
--                 and appends a `deadline_set` event; replacing a year that changes a date
--                 appends `deadline_changed`.
-- case_events     the two events join the list of the CHECK constraint. SQLite cannot change a
--                 CHECK in place, so the table is rebuilt with its rows, ids, index and
--                 append-only triggers unchanged.
CREATE TABLE IF NOT EXISTS calendar_years (
    year INTEGER PRIMARY KEY,
    notice TEXT NOT NULL,
    source_url TEXT NOT NULL,
    source_file TEXT NOT NULL,
    working_days INTEGER NOT NULL,
    imported_at TEXT NOT NULL,
    imported_by TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS calendar_days (
    date TEXT PRIMARY KEY,
    year INTEGER NOT NULL REFERENCES calendar_years (year),
    kind TEXT NOT NULL CHECK (kind IN ('holiday_off', 'makeup_workday')),
    name TEXT NOT NULL,
    source_url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calendar_days_year ON calendar_days (year, date);

ALTER TABLE case_measures ADD COLUMN due_counts_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE case_measures ADD COLUMN due_pending_year INTEGER;

DROP TRIGGER IF EXISTS case_events_no_update;
DROP TRIGGER IF EXISTS case_events_no_delete;
CREATE TABLE case_events_v40 (
    event_id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (case_id),
    event TEXT NOT NULL CHECK (event IN (
        'opened', 'measures_decided', 'notice_issued', 'delivered', 'report_received',
        'verified', 'resume_requested', 'lifted', 'overdue', 'escalated', 'listed', 'closed',
        'deadline_set', 'deadline_changed')),
    event_date TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    document_no TEXT,
    recorded_at TEXT NOT NULL
);
INSERT INTO case_events_v40 (event_id, case_id, event, event_date, actor, note, document_no,
                             recorded_at)
    SELECT event_id, case_id, event, event_date, actor, note, document_no, recorded_at
    FROM case_events;
DROP TABLE case_events;
ALTER TABLE case_events_v40 RENAME TO case_events;
CREATE INDEX IF NOT EXISTS case_events_case ON case_events (case_id, event_id);
CREATE TRIGGER IF NOT EXISTS case_events_no_update BEFORE UPDATE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never edited');
END;
CREATE TRIGGER IF NOT EXISTS case_events_no_delete BEFORE DELETE ON case_events
BEGIN
    SELECT RAISE(ABORT, 'case_events is append-only: events are never deleted');
END;
