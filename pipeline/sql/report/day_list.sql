-- The risk list of one business day (?1 = YYYY-MM-DD), by rank, with the region's name and
-- the items (for the reason in Chinese).
SELECT r.rank, r.enterprise_name, r.enterprise_type, r.region_code,
       COALESCE(g.name, r.region_code) AS region_name, r.grade, r.score, r.indicators,
       r.top_reason, r.items_json
FROM risk_list r
LEFT JOIN regions g ON g.code = r.region_code
WHERE r.biz_date = ?1
ORDER BY r.rank
