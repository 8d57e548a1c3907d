-- The ledger at a glance: open cases, open cases with a measure the sweep marked overdue,
-- and escalations ever recorded.
SELECT
    (SELECT COUNT(*) FROM cases WHERE status = 'open') AS open_cases,
    (SELECT COUNT(DISTINCT c.case_id) FROM cases c JOIN case_measures m ON m.case_id = c.case_id
      WHERE c.status = 'open' AND m.state = 'overdue') AS overdue_cases,
    (SELECT COUNT(*) FROM case_events WHERE event = 'escalated') AS escalations
