-- The coded sales of the days [${from}, ${to}] the trace-duplicate rule judges, in the columns
-- of the trace-code day files (`sql/stream/baseline_trace.sql`). With the first sales of the
-- same codes on the days of the look-back before ${from} (read from those day files), they are
-- all `trace_duplicate.sql` needs: the rule relates the sales of one code only, and of an
-- earlier day it needs only whether a sale came before and which came first.
SELECT trace_code, event_time, event_id, enterprise_id, product_id, biz_date
FROM sales
WHERE trace_code IS NOT NULL AND biz_date BETWEEN ${from} AND ${to}
