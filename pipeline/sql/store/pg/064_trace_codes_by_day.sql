-- Store schema version 64: the first sales of traceability codes by business day.
--
-- trace_codes_by_day  lets the stream forget the first sales no open day can reach (those
--                     before the trace look-back of the earliest open day, removed when a day
--                     closes) without scanning every code ever sold.
CREATE INDEX IF NOT EXISTS trace_codes_by_day ON trace_codes (biz_date);
