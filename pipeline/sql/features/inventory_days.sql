-- Day table `inventory_days` of the anomaly model's features: the enterprises that reported an
-- inventory snapshot, per business day over [${from} − 31 days, ${to}] (an enterprise's
-- activity, from which the report gap is measured). A row describes its own day only, so the
-- nightly job keeps each day's rows in its day store.
SELECT DISTINCT enterprise_id, biz_date
FROM inventory
WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
