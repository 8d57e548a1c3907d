-- Risk-list rows per business day and grade over [?1, ?2] (the 30-day trend).
SELECT biz_date, grade, COUNT(*) AS n
FROM risk_list
WHERE biz_date BETWEEN ?1 AND ?2
GROUP BY biz_date, grade
ORDER BY biz_date, grade
