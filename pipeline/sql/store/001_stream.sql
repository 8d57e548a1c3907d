-- Store schema version 1: the risk store shared by the nightly job and the stream service.
--
-- risk_list         nightly risk-list rows (one per list id × enterprise)
-- risk_events       real-time risk events; `id` is deterministic, so a replay inserts nothing
-- outbox            messages to publish to Kafka after the transaction that produced them
--                   commits (risk events and dead letters); `published_at` is set once sent
-- dead_letters      rejected stream messages with their source coordinates
-- stream_offsets    next offset to process per topic × partition (the checkpoint)
-- stream_partitions per-partition window metadata (closed days, event-time maxima) and the
--                   ownership epoch that fences off a previous owner
-- stream_windows    window state per partition × enterprise × product × business day
-- stream_reported   enterprise-days with an inventory report, per partition
-- stream_batch_sales batches sold per partition (for a failed test arriving after the sale)
-- stream_counts     consumed / accepted / rejected / late / skipped per topic × partition
-- trace_codes       the earliest known sale of every traceability code (shared by partitions)
-- failed_batches    batches that failed a test, with the first failing day (shared)
CREATE TABLE IF NOT EXISTS risk_list (
    list_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    rank INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL,
    enterprise_name TEXT NOT NULL,
    enterprise_type TEXT NOT NULL,
    region_code TEXT NOT NULL,
    score REAL NOT NULL,
    grade TEXT NOT NULL,
    indicators TEXT NOT NULL,
    top_reason TEXT NOT NULL,
    rule_version TEXT NOT NULL,
    items_json TEXT NOT NULL,
    PRIMARY KEY (list_id, enterprise_id)
);
CREATE TABLE IF NOT EXISTS risk_events (
    id TEXT PRIMARY KEY,
    indicator TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    product_id TEXT,
    biz_date TEXT NOT NULL,
    event_time TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    source_topic TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
    score REAL NOT NULL,
    grade TEXT NOT NULL,
    item_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS risk_events_day ON risk_events (biz_date, enterprise_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic_role TEXT NOT NULL,
    message_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (published_at, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE TABLE IF NOT EXISTS stream_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS stream_partitions (
    partition INTEGER PRIMARY KEY,
    -- Ownership epoch: raised by every instance that takes the partition; a batch commits
    -- only while its instance's epoch is current (an old owner is fenced off).
    epoch INTEGER NOT NULL DEFAULT 0,
    meta_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_windows (
    partition INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    sold INTEGER NOT NULL,
    retail REAL NOT NULL,
    inflow INTEGER NOT NULL,
    closing INTEGER,
    surge_fired INTEGER NOT NULL,
    PRIMARY KEY (partition, enterprise_id, product_id, biz_date)
);
CREATE TABLE IF NOT EXISTS stream_reported (
    partition INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    PRIMARY KEY (partition, enterprise_id, biz_date)
);
CREATE TABLE IF NOT EXISTS stream_batch_sales (
    partition INTEGER NOT NULL,
    product_id TEXT NOT NULL,
    batch_no TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    biz_date TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (partition, product_id, batch_no, enterprise_id, biz_date)
);
CREATE TABLE IF NOT EXISTS stream_counts (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS trace_codes (
    trace_code TEXT PRIMARY KEY,
    event_time_ms INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    enterprise_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    biz_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_batches (
    product_id TEXT NOT NULL,
    batch_no TEXT NOT NULL,
    failed_on TEXT NOT NULL,
    PRIMARY KEY (product_id, batch_no)
);
