-- The cases of the workbench's queues and lists: one row per case with its region, assignee,
-- the earliest due date of its open measures, whether a measure is overdue, whether a
-- rectification report awaits verification, and the unacknowledged notice deliveries that
-- every channel failed (awaiting service by hand). ?1: only open cases (1) or all (0).
SELECT c.case_id, c.enterprise_id, c.enterprise_name, c.region_code, c.assignee, c.status,
       c.opened_on,
       (SELECT MIN(m.due_date) FROM case_measures m
         WHERE m.case_id = c.case_id AND m.state = 'open' AND m.due_date IS NOT NULL) AS next_due,
       EXISTS (SELECT 1 FROM case_measures m
                WHERE m.case_id = c.case_id AND m.state = 'overdue') AS overdue,
       -- a report received and not verified since (a measure whose due date waits for the
       -- calendar stays `open`, so the events decide)
       EXISTS (SELECT 1 FROM case_events e
                WHERE e.case_id = c.case_id AND e.event = 'report_received'
                  AND NOT EXISTS (SELECT 1 FROM case_events v
                                   WHERE v.case_id = c.case_id AND v.event = 'verified'
                                     AND v.event_id > e.event_id)) AS reported,
       (SELECT COUNT(*) FROM deliveries d
         WHERE d.case_id = c.case_id AND d.kind = 'notice' AND d.status = 'failed'
           AND d.acknowledged_at IS NULL) AS manual
FROM cases c
WHERE (?1 = 0 OR c.status = 'open')
ORDER BY c.opened_on DESC, c.case_id
