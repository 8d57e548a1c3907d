-- Feature table `reporting_daily`: every enterprise × business day over [${from} − 31 days,
-- ${to}] on which the enterprise reported anything (inventory snapshots or sales), with the
-- packages of that day's snapshots (`stock`; NULL on a day it reported sales only), the input
-- of the reporting indicator. Built once per run like `retail_daily`; a row describes its own
-- day only, so the nightly job keeps each day's rows in its day store and a night reads the
-- month of reports from there instead of a month of sales and inventory.
SELECT enterprise_id, biz_date, SUM(stock) AS stock
FROM (
    SELECT enterprise_id, biz_date, quantity AS stock
    FROM inventory WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
    UNION ALL
    SELECT enterprise_id, biz_date, CAST(NULL AS BIGINT)
    FROM sales WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
)
GROUP BY enterprise_id, biz_date
