-- Store schema version 65: the traceability codes are forgotten by a sweep in code order.
--
-- trace_codes_by_day  (version 64) dropped: the stream now forgets the first sales no open day
--                     can reach by walking `trace_codes` in its own key, a slice per
--                     micro-batch, so no code pays a second index entry when it is recorded
--                     (that entry and its pages at commit cost the stream 6–19 % of its
--                     throughput in the stream benchmark).
DROP INDEX IF EXISTS trace_codes_by_day;
