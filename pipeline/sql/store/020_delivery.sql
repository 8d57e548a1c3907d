-- Store schema version 20: the delivery outbox (送达) of notices and real-time risk warnings.
--
-- deliveries         one row per thing to deliver to an enterprise's lead: an issued document
--                    (`notice`) or a real-time risk event (`risk_warning`). The rows are written
--                    by the triggers below, inside the very transaction that inserts the document
--                    (notices::issue, with its ledger event and number) or the risk event (the
--                    stream's micro-batch): never a notice without its delivery, never a delivery
--                    without its notice. `status` moves pending → delivered, or pending → failed
--                    when every registered contact of the enterprise failed (the delivery is then
--                    on the supervisor's manual-service list). `contact_index` is the contact
--                    (in priority order) being tried and `attempts` the attempts made on it;
--                    `next_attempt_at` and `lease_until` are Unix milliseconds: a worker leases a
--                    due row before sending, so concurrent or restarted workers never send the
--                    same row at the same time (an expired lease — a worker killed mid-send — is
--                    taken over; the receiver dedupes by the stable idempotency key).
-- delivery_attempts  every send attempt with its channel, masked recipient, outcome and cause:
--                    append-only (the triggers refuse UPDATE and DELETE).
--
-- The idempotency key is stable for the life of the row and ASCII (it travels in a header):
-- `notice-<year>-<hex of the series>-<seq>` for a document, `risk-<event id>` for an event.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('notice', 'risk_warning')),
    enterprise_id TEXT NOT NULL,
    case_id TEXT REFERENCES cases (case_id),
    document_no TEXT REFERENCES documents (number),
    risk_event_id TEXT REFERENCES risk_events (id),
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    contact_index INTEGER NOT NULL DEFAULT 0,
    channel TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at TEXT,
    delivered_channel TEXT,
    failed_at TEXT,
    acknowledged_at TEXT,
    CHECK ((kind = 'notice') = (document_no IS NOT NULL)),
    CHECK ((kind = 'risk_warning') = (risk_event_id IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_case ON deliveries (case_id);
CREATE INDEX IF NOT EXISTS deliveries_document ON deliveries (document_no);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    attempt_id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (delivery_id),
    contact_index INTEGER NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    attempt_no INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'retry', 'final_failure')),
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt_id);
CREATE TRIGGER IF NOT EXISTS delivery_attempts_no_update BEFORE UPDATE ON delivery_attempts
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts is append-only');
END;
CREATE TRIGGER IF NOT EXISTS delivery_attempts_no_delete BEFORE DELETE ON delivery_attempts
BEGIN
    SELECT RAISE(ABORT, 'delivery_attempts is append-only');
END;
CREATE TRIGGER IF NOT EXISTS deliveries_no_delete BEFORE DELETE ON deliveries
BEGIN
    SELECT RAISE(ABORT, 'deliveries are never deleted: they are the proof of service');
END;

-- The outbox rows, written in the inserting transaction.
CREATE TRIGGER IF NOT EXISTS documents_outbox AFTER INSERT ON documents
BEGIN
    INSERT INTO deliveries (idempotency_key, kind, enterprise_id, case_id, document_no,
                            created_at, next_attempt_at)
    SELECT 'notice-' || NEW.year || '-' || hex(NEW.series) || '-' || NEW.seq, 'notice',
           c.enterprise_id, NEW.case_id, NEW.number,
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), CAST(unixepoch('subsec') * 1000 AS INTEGER)
    FROM cases c WHERE c.case_id = NEW.case_id;
    SELECT RAISE(ABORT, 'a document needs its case: no delivery could be queued')
    WHERE NOT EXISTS (SELECT 1 FROM cases WHERE case_id = NEW.case_id);
END;
CREATE TRIGGER IF NOT EXISTS risk_events_outbox AFTER INSERT ON risk_events
BEGIN
    INSERT INTO deliveries (idempotency_key, kind, enterprise_id, risk_event_id, created_at,
                            next_attempt_at)
    VALUES ('risk-' || NEW.id, 'risk_warning', NEW.enterprise_id, NEW.id,
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
