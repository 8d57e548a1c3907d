-- Documents in the ledger per kind: all of them, and those issued on ?1 (the run date).
SELECT kind, COUNT(*) AS total, SUM(CASE WHEN issued_on = ?1 THEN 1 ELSE 0 END) AS on_day
FROM documents
GROUP BY kind
ORDER BY kind
