-- Reporting stopped (未按规定上报): an enterprise that reported (inventory snapshots or
-- sales) on ≥ ${stop_min_active} of the days D−30 … D−3 but has reported nothing for the last
-- ${stop_days} days up to D. `run_dates` holds the business days of the run.
-- A closure is not a silence: an enterprise whose last report was a stocktake of nothing (every
-- snapshot of that day zero — it returned or sold its stock and wound down, as a closing
-- pharmacy does) has nothing left to report and is not a hit.
WITH activity AS (
    -- The enterprise-days with a report, from the feature table of the month before the run.
    SELECT enterprise_id, biz_date FROM reporting_daily
    WHERE biz_date BETWEEN ${from} - INTERVAL '31 days' AND ${to}
),
judged AS (
    SELECT a.enterprise_id, r.run_date,
           MAX(a.biz_date) AS last_report,
           COUNT(DISTINCT CASE WHEN a.biz_date BETWEEN r.run_date - INTERVAL '30 days'
                                                  AND r.run_date - INTERVAL '3 days'
                               THEN a.biz_date END) AS active_days
    FROM run_dates r
    JOIN activity a
      ON a.biz_date <= r.run_date AND a.biz_date >= r.run_date - INTERVAL '30 days'
    GROUP BY a.enterprise_id, r.run_date
)
SELECT j.enterprise_id,
       CAST(NULL AS VARCHAR) AS product_id,
       j.run_date AS biz_date,
       'reporting_stopped' AS indicator,
       j.last_report + INTERVAL '1 day' AS window_start,
       j.run_date AS window_end,
       CAST(j.run_date - j.last_report AS DOUBLE) AS observed,
       0.0 AS expected,
       concat('last_report=', CAST(j.last_report AS VARCHAR), ';active_days=', CAST(j.active_days AS VARCHAR)) AS detail
FROM judged j
LEFT JOIN reporting_daily s ON s.enterprise_id = j.enterprise_id AND s.biz_date = j.last_report
WHERE j.last_report <= j.run_date - INTERVAL '${stop_days} days'
  AND j.active_days >= ${stop_min_active}
  AND COALESCE(s.stock, 1) > 0
