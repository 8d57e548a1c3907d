-- Stream baseline: the inventory snapshots of the run's last day (opening stock of the next
-- day's reconciliation); an enterprise with a row here reported that day.
SELECT enterprise_id, product_id, CAST(SUM(quantity) AS BIGINT) AS qty
FROM inventory
WHERE biz_date = ${to}
GROUP BY enterprise_id, product_id
