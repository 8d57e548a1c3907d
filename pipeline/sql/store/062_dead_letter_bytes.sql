-- Store schema version 62: a dead letter keeps the exact bytes of a message that is not UTF-8.
--
-- dead_letters.raw_base64  the payload in base64 when it is not valid UTF-8 (`raw` then holds
--                          the lossy text, with U+FFFD where bytes could not be read); NULL
--                          for every UTF-8 message.
ALTER TABLE dead_letters ADD COLUMN raw_base64 TEXT;
