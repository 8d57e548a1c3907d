-- Store schema version 61: the documents of the penalty procedure (see the SQLite migration).
--
-- drafts.particulars  the penalty, its basis, the provision violated and the hearing's place a
--                     person writes into a penalty document (JSON; '{}' otherwise).
-- documents_outbox    the filing approval form (立案审批表) is never queued for delivery.
ALTER TABLE drafts ADD COLUMN IF NOT EXISTS particulars TEXT NOT NULL DEFAULT '{}';

CREATE OR REPLACE FUNCTION documents_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'filing_approval' THEN
        RETURN NULL;
    END IF;
    INSERT INTO deliveries (idempotency_key, kind, enterprise_id, case_id, document_no,
                            created_at, next_attempt_at)
    SELECT 'notice-' || NEW.year || '-' || upper(encode(convert_to(NEW.series, 'UTF8'), 'hex'))
               || '-' || NEW.seq,
           'notice', c.enterprise_id, NEW.case_id, NEW.number,
           to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM cases c WHERE c.case_id = NEW.case_id;
    RETURN NULL;
END
$$;
