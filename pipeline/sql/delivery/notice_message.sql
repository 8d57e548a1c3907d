-- What a notice's message says: the document, the enterprise, and the due date of the measure
-- the document serves (none for a lifting notice), or while that date waits for the next
-- year's working-day calendar, the year. ?1 document number.
SELECT d.number, d.kind, d.issued_on, d.html, d.markdown, c.enterprise_name,
       (SELECT MIN(m.due_date) FROM case_measures m
         WHERE m.case_id = d.case_id AND m.state <> 'done' AND m.due_date IS NOT NULL
           AND ((d.kind = 'caution_notice' AND m.code = 'caution')
             OR (d.kind = 'interview_notice' AND m.code = 'interview')
             OR (d.kind = 'suspension_decision' AND m.code LIKE 'suspend_sales%'))),
       (SELECT MIN(m.due_pending_year) FROM case_measures m
         WHERE m.case_id = d.case_id AND m.state <> 'done'
           AND ((d.kind = 'caution_notice' AND m.code = 'caution')
             OR (d.kind = 'interview_notice' AND m.code = 'interview')))
FROM documents d JOIN cases c ON c.case_id = d.case_id
WHERE d.number = ?1
