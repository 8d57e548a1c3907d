-- The documents addressed to one enterprise (?1), newest first, with whether and when the
-- lead confirmed receipt (the first `delivered` event of the document). The filing approval
-- form (立案审批表) is the authority's internal record and is never shown to the enterprise.
SELECT d.number, d.kind, d.case_id, d.issued_on,
       (SELECT MIN(e.recorded_at) FROM case_events e
         WHERE e.case_id = d.case_id AND e.event = 'delivered' AND e.document_no = d.number)
FROM documents d JOIN cases c ON c.case_id = d.case_id
WHERE c.enterprise_id = ?1 AND d.kind <> 'filing_approval'
ORDER BY d.issued_on DESC, d.number DESC
