-- Store schema version 61: the documents of the penalty procedure.
--
-- drafts.particulars  what a person writes into a penalty document besides the note: the
--                     penalty proposed or decided, its legal basis, the provision violated and
--                     the hearing's place (JSON; '{}' for the measure documents).
-- documents_outbox    the filing approval form (立案审批表, kind `filing_approval`) is the
--                     authority's internal record: numbered and stored like every document,
--                     never queued for delivery to the enterprise.
ALTER TABLE drafts ADD COLUMN particulars TEXT NOT NULL DEFAULT '{}';

DROP TRIGGER IF EXISTS documents_outbox;
CREATE TRIGGER documents_outbox AFTER INSERT ON documents
BEGIN
    INSERT INTO deliveries (idempotency_key, kind, enterprise_id, case_id, document_no,
                            created_at, next_attempt_at)
    SELECT 'notice-' || NEW.year || '-' || hex(NEW.series) || '-' || NEW.seq, 'notice',
           c.enterprise_id, NEW.case_id, NEW.number,
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM cases c WHERE c.case_id = NEW.case_id AND NEW.kind <> 'filing_approval';
    SELECT RAISE(ABORT, 'a document needs its case: no delivery could be queued')
    WHERE NOT EXISTS (SELECT 1 FROM cases WHERE case_id = NEW.case_id);
END;
