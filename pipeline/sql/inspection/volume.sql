-- Volume of each enterprise for the scale of its inspection checklist: packages it moved —
-- sold (positive quantities), bought and produced — over the business days
-- [${from}, ${to}] (the 28 days up to the plan's day). An enterprise with no records in the
-- window has no row (volume 0). The plan ranks enterprises within their type by this volume
-- into thirds (small, medium, large).
WITH moved AS (
    SELECT enterprise_id, CAST(quantity AS DOUBLE) AS packages
    FROM sales WHERE quantity > 0 AND biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, CAST(quantity AS DOUBLE)
    FROM purchase WHERE biz_date BETWEEN ${from} AND ${to}
    UNION ALL
    SELECT enterprise_id, CAST(quantity AS DOUBLE)
    FROM production WHERE biz_date BETWEEN ${from} AND ${to}
)
SELECT enterprise_id, SUM(packages) AS volume
FROM moved
GROUP BY enterprise_id
ORDER BY enterprise_id
