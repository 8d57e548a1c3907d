-- Deadlines of measures not yet done whose due date waits for a year the working-day calendar
-- does not cover yet (store migration 040): the nightly metric pharmwatch_deadlines_pending_calendar.
SELECT COUNT(*)
FROM case_measures
WHERE due_pending_year IS NOT NULL AND state <> 'done'
