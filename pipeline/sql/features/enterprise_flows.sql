-- Day table `enterprise_flows` of the anomaly model's features: an enterprise's packages sold
-- (every sale with a positive quantity, retail and wholesale), bought and produced, its
-- special-drug packages sold (narcotic, psychotropic or ephedrine-containing) and its distinct
-- products sold, per enterprise × business day over [${from} − 31 days, ${to}], for every
-- enterprise-day with a sale, a purchase or a production. A row describes its own day only, so
-- the nightly job keeps each day's rows in its day store and the feature query
-- (`enterprise_daily.sql`) reads 28 days of these (a few thousand rows a day) for the
-- enterprise's baselines instead of 28 days of sales, purchases and production.
--
-- The sales come from the day table `sales_daily` (one row per enterprise × product × day with
-- its packages sold, built before this one), not from the day's sales: its rows are already
-- summed per product, so a day's products are its rows (counted) and its packages their sum (whole
-- packages: the same sums whichever way they are added).
WITH flows AS (
    SELECT s.enterprise_id, s.biz_date, s.qty AS sold, 0.0 AS bought, 0.0 AS produced,
           CASE WHEN p.special_class IN ('narcotic', 'psychotropic', 'ephedrine')
                THEN s.qty ELSE 0.0 END AS special,
           s.product_id AS sold_product
    FROM sales_daily s JOIN products p ON p.product_id = s.product_id
    WHERE s.biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
    UNION ALL
    SELECT enterprise_id, biz_date, 0.0, CAST(quantity AS DOUBLE), 0.0, 0.0, NULL
    FROM purchase WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
    UNION ALL
    SELECT enterprise_id, biz_date, 0.0, 0.0, CAST(quantity AS DOUBLE), 0.0, NULL
    FROM production WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
)
SELECT enterprise_id, biz_date, SUM(sold) AS sold, SUM(bought) AS bought,
       SUM(produced) AS produced, SUM(special) AS special,
       CAST(COUNT(sold_product) AS DOUBLE) AS products
FROM flows
GROUP BY enterprise_id, biz_date
