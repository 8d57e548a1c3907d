-- The deliveries of a case (or, with ?1 NULL and ?2 = 1, the manual-service list: every failed
-- delivery not acknowledged since), with their attempts summarised per channel.
SELECT d.delivery_id, d.kind, d.enterprise_id, d.document_no, d.risk_event_id, d.status,
       d.created_at, d.delivered_at, d.delivered_channel, d.failed_at, d.acknowledged_at,
       d.last_error, d.case_id,
       (SELECT group_concat(channel || ' ×' || n || ' ' || last_outcome, '; ')
          FROM (SELECT a.channel, COUNT(*) AS n,
                       (SELECT a2.outcome FROM delivery_attempts a2
                         WHERE a2.delivery_id = d.delivery_id AND a2.contact_index = a.contact_index
                         ORDER BY a2.attempt_id DESC LIMIT 1) AS last_outcome
                  FROM delivery_attempts a WHERE a.delivery_id = d.delivery_id
                 GROUP BY a.contact_index, a.channel ORDER BY a.contact_index) AS per_channel)
FROM deliveries d
WHERE (?1 IS NOT NULL AND d.case_id = ?1)
   OR (?1 IS NULL AND ?2 = 1 AND d.status = 'failed' AND d.acknowledged_at IS NULL)
ORDER BY d.delivery_id
