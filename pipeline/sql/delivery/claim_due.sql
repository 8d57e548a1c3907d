-- The deliveries a worker may send now: pending, due, not leased by a live worker; oldest due
-- first. ?1 now (Unix ms), ?2 whether risk warnings are delivered, ?3 the most rows to take.
SELECT delivery_id, idempotency_key, kind, enterprise_id, case_id, document_no, risk_event_id,
       created_at, contact_index, attempts
FROM deliveries
WHERE status = 'pending' AND next_attempt_at <= ?1 AND lease_until <= ?1
  AND (kind = 'notice' OR ?2)
ORDER BY next_attempt_at, delivery_id
LIMIT ?3
