-- Store schema version 60 (PostgreSQL): credit repair (信用修复) and the penalty procedure in the case
-- trail.
--
-- case_events     the events credit_repair_applied, credit_repair_reviewed,
--                 credit_repair_granted and credit_repair_refused, and the stages of a referred
--                 case's penalty procedure (penalty_filed, penalty_notice_served,
--                 hearing_requested, clock_stopped, clock_resumed, extension_granted,
--                 penalty_decided, penalty_decision_served) join the list of the CHECK
--                 constraint (the named constraint is replaced; the table, its identity, index
--                 and triggers stay as they are).
ALTER TABLE case_events DROP CONSTRAINT IF EXISTS case_events_event_check;
ALTER TABLE case_events ADD CONSTRAINT case_events_event_check CHECK (event IN (
    'opened', 'measures_decided', 'notice_issued', 'delivered', 'report_received',
    'verified', 'resume_requested', 'lifted', 'overdue', 'escalated', 'listed', 'closed',
    'deadline_set', 'deadline_changed', 'credit_repair_applied', 'credit_repair_reviewed',
    'credit_repair_granted', 'credit_repair_refused', 'penalty_filed',
    'penalty_notice_served', 'hearing_requested', 'clock_stopped', 'clock_resumed',
    'extension_granted', 'penalty_decided', 'penalty_decision_served'));
