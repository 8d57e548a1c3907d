-- Open cases with an overdue measure: the case, the enterprise, the measure and its due date,
-- longest overdue first.
SELECT c.case_id, c.enterprise_name, m.code, m.article, COALESCE(m.due_date, '') AS due_date
FROM cases c
JOIN case_measures m ON m.case_id = c.case_id
WHERE c.status = 'open' AND m.state = 'overdue'
ORDER BY m.due_date, c.case_id, m.code
