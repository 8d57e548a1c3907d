-- PostgreSQL form of store schema version 40 (../040_calendar.sql): working-day calendar
-- years loaded by an operator, and deadlines that wait for them.
--
-- calendar_years  one row per year loaded with `pharmwatch calendar import` (the State
--                 Council's notice, where it is published, the file it came from, who loaded it
--                 and when, and the year's working days as a check figure). `year` is a natural
--                 key always supplied by the importer: a plain BIGINT key, not an identity.
-- calendar_days   the listed days of those years (holiday_off / makeup_workday), as in the
--                 calendar CSV format.
-- case_measures   gains how each working-day deadline is counted (`due_counts_json`) and the
--                 year a due date waits for (`due_pending_year`; NULL when the date is known or
--                 the measure has none).
-- case_events     the events deadline_set and deadline_changed join the list of the CHECK
--                 constraint. SQLite cannot change a CHECK in place and rebuilds the table (rows,
--                 ids, index and append-only triggers unchanged); PostgreSQL replaces the named
--                 constraint instead, so the table, its identity, index and triggers stay as
--                 version 10 made them.
CREATE TABLE IF NOT EXISTS calendar_years (
    year BIGINT PRIMARY KEY,
    notice TEXT NOT NULL,
    source_url TEXT NOT NULL,
    source_file TEXT NOT NULL,
    working_days BIGINT NOT NULL,
    imported_at TEXT NOT NULL,
    imported_by TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS calendar_days (
    date TEXT PRIMARY KEY,
    year BIGINT NOT NULL REFERENCES calendar_years (year),
    kind TEXT NOT NULL CHECK (kind IN ('holiday_off', 'makeup_workday')),
    name TEXT NOT NULL,
    source_url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calendar_days_year ON calendar_days (year, date);

ALTER TABLE case_measures ADD COLUMN IF NOT EXISTS due_counts_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE case_measures ADD COLUMN IF NOT EXISTS due_pending_year BIGINT;

ALTER TABLE case_events DROP CONSTRAINT IF EXISTS case_events_event_check;
ALTER TABLE case_events ADD CONSTRAINT case_events_event_check CHECK (event IN (
    'opened', 'measures_decided', 'notice_issued', 'delivered', 'report_received',
    'verified', 'resume_requested', 'lifted', 'overdue', 'escalated', 'listed', 'closed',
    'deadline_set', 'deadline_changed'));
