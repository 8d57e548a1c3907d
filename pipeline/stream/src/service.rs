//! The consumer service behind `pharmwatch stream`: joins the consumer group, polls
//! micro-batches (bounded by size and time), decodes and validates every message, lands
//! accepted records in the lake, judges them with the [`Engine`], and commits.
//!
//! Commit protocol of one micro-batch (the exactly-once effect):
//! 1. lake files are written whole: `LAKE/<kind>/date=D/stream-pNNN-oOFFSET.parquet`, one per
//!    kind × day × partition, named by the batch's first offset of that topic-partition;
//! 2. one store transaction holds the dead letters, the new risk events, the window state, the
//!    per-topic-partition next offsets, the counts and an outbox row per message to publish;
//! 3. the outbox is published (risk events to the risk-events topic keyed by event id, dead
//!    letters to the dead-letter topic keyed by `topic/partition/offset`), then marked sent;
//! 4. the offsets are committed to Kafka (advisory: the store's offsets are the truth).
//!
//! After a crash anywhere in 1–4: a message below the store's next offset is skipped (its
//! effect is already stored), lake files at or above it are leftovers of the unfinished batch
//! and are deleted when the partition is loaded, and unsent outbox rows are sent on start.
//! Publishing is at least once with stable keys and ids, so consumers of the topics dedupe.
//!
//! Partitions are the unit of scale: several instances in one group (range assignment, so
//! partition p of every event topic goes to one instance) split them, and state is loaded per
//! partition from the shared store when a partition is assigned.
//!
//! Under a backlog the next batch is polled before the current one is judged and decoded on a
//! second thread meanwhile. A seek (rewinding a resuming topic-partition) makes everything
//! polled before it for that topic-partition stale: those messages are dropped, never
//! judged, and the consumer delivers them again from the new position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::RecordBatch;
use rdkafka::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use pharmwatch_schemas::{EventKind, biz_date};

use crate::metrics::{self, StreamMetrics};
use pharmwatch_core::error::{PipelineError, Result};
use pharmwatch_core::lake::write_parquet;
use pharmwatch_core::store::{Store, sql_err};

use super::config::StreamConfig;
use super::engine::{
    Accepted, Delta, Engine, PartitionState, Reference, Rejected, RiskEvent, Source, decode,
    window_deltas,
};
use pharmwatch_core::baseline::Baseline;

/// Options of one run of the service besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit (status 0) once every assigned partition is read to its end and nothing arrived
    /// for this long. For demos, tests and benchmarks; a service leaves it unset.
    pub exit_when_idle: Option<Duration>,
}

/// What a run did (printed as JSON at exit).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Messages consumed by this process.
    pub consumed: u64,
    /// Accepted.
    pub accepted: u64,
    /// Rejected.
    pub rejected: u64,
    /// Late.
    pub late: u64,
    /// Skipped as already applied.
    pub replayed: u64,
    /// New risk events.
    pub risk_events: u64,
    /// Micro-batches.
    pub batches: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Seconds from the first message received to the end of the last batch (throughput is
    /// `consumed / active_seconds`).
    pub active_seconds: f64,
    /// Seconds per stage of the consume loop (as `pharmwatch_stream_phase_seconds_total`).
    pub phase_seconds: BTreeMap<String, f64>,
}

enum Reb {
    Assign(Vec<(String, i32)>),
    Revoke(Vec<(String, i32)>),
}

/// Consumer context: records rebalances and the high watermarks from librdkafka statistics.
struct Ctx {
    rebalances: Mutex<Vec<Reb>>,
    high: Mutex<HashMap<(String, i32), i64>>,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let Ok(mut high) = self.high.lock() else {
            return;
        };
        for (t, topic) in s.topics {
            for (p, part) in topic.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    high.insert((t.clone(), p), part.hi_offset);
                }
            }
        }
    }
}

fn tpl_list(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let ev = match r {
            Rebalance::Assign(tpl) => Reb::Assign(tpl_list(tpl)),
            Rebalance::Revoke(tpl) => Reb::Revoke(tpl_list(tpl)),
            Rebalance::Error(e) => {
                eprintln!("stream: rebalance error: {e}");
                return;
            }
        };
        if let Ok(mut v) = self.rebalances.lock() {
            v.push(ev);
        }
    }
}

fn kafka_err(context: impl Into<String>, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Kafka {
        context: context.into(),
        reason: e.to_string(),
    }
}

fn client_config(cfg: &StreamConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    c
}

/// Health seen by `/healthz`.
#[derive(Debug, Clone, Default, Serialize)]
struct Health {
    status: &'static str,
    assigned_partitions: Vec<i32>,
    last_poll_unix: i64,
    batches: u64,
}

/// Checks that the brokers answer and the topics exist with one partition count; returns it.
fn check_topics(consumer: &BaseConsumer<Ctx>, cfg: &StreamConfig) -> Result<i32> {
    let timeout = Duration::from_secs(cfg.startup_timeout_secs.max(1));
    let md = consumer.fetch_metadata(None, timeout).map_err(|e| {
        kafka_err(
            format!("brokers {}", cfg.brokers),
            format!(
                "cannot reach the broker within {} s: {e}. Is it running, and is `brokers` (or PHARMWATCH_BROKERS) right?",
                timeout.as_secs()
            ),
        )
    })?;
    let have: BTreeMap<&str, usize> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    let mut need: Vec<String> = EventKind::ALL.iter().map(|k| cfg.topic(*k)).collect();
    need.push(cfg.dead_letter_topic.clone());
    need.push(cfg.risk_events_topic.clone());
    let missing: Vec<&String> = need
        .iter()
        .filter(|t| !have.contains_key(t.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(kafka_err(
            format!("brokers {}", cfg.brokers),
            format!(
                "missing topics: {} (create them, e.g. `tansu topic create --broker tcp://HOST:PORT --partitions N NAME`; every event topic needs the same partition count)",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let counts: BTreeMap<String, usize> = EventKind::ALL
        .iter()
        .map(|k| (cfg.topic(*k), have[cfg.topic(*k).as_str()]))
        .collect();
    let first = counts.values().copied().next().unwrap_or(1);
    if counts.values().any(|c| *c != first) {
        return Err(kafka_err(
            "topics",
            format!(
                "the event topics must have the same number of partitions (they are keyed by enterprise and read together per partition): {}",
                counts
                    .iter()
                    .map(|(t, c)| format!("{t}={c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(first as i32)
}

async fn serve_http(
    listen: String,
    health: Arc<Mutex<Health>>,
) -> Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| PipelineError::Config(format!("metrics_listen {listen}: {e}")))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                // Every set this process exposes (the stream's, and the delivery worker's when it
                // runs here too): one scrape serves them all.
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    pharmwatch_core::metrics::render_exposed(),
                )
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let h = health.lock().map(|h| h.clone()).unwrap_or_default();
                async move {
                    let stale = Utc::now().timestamp() - h.last_poll_unix > 60;
                    let code = if stale || h.status != "ok" {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (code, axum::Json(h))
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("stream: metrics server stopped: {e}");
        }
    }))
}

/// Deletes lake files of partition `p` that the store never committed (first offset at or
/// above the store's next offset for their topic).
fn remove_uncommitted(lake: &Path, cfg: &StreamConfig, st: &PartitionState) -> Result<usize> {
    let prefix = format!("stream-p{:03}-o", st.partition);
    let mut removed = 0;
    for kind in EventKind::ALL {
        let next = st.offsets.get(&cfg.topic(*kind)).copied().unwrap_or(0);
        let dir = lake.join(kind.as_str());
        let Ok(days) = std::fs::read_dir(&dir) else {
            continue;
        };
        for day in days.flatten() {
            let Ok(files) = std::fs::read_dir(day.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let Some(off) = name
                    .strip_prefix(&prefix)
                    .and_then(|r| r.split('.').next())
                    .and_then(|o| o.parse::<i64>().ok())
                else {
                    continue;
                };
                if off >= next {
                    std::fs::remove_file(f.path()).map_err(|e| PipelineError::io(&f.path(), e))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// Loads the trace codes of the baseline into the store's shared table (earliest sale wins).
/// Whether the baseline `identity` is recorded in `stream_seeded`.
fn already_seeded(conn: &rusqlite::Connection, path: &Path, identity: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM stream_seeded WHERE baseline = ?1",
        [identity],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(|e| sql_err(path, "read stream_seeded", e))
}

/// Loads the baseline's first trace-code sales into the store's shared table, once per
/// baseline: a restart with the same baseline finds it recorded in `stream_seeded` and
/// starts without re-reading it.
async fn seed_trace_codes(store: &mut Store, baseline: &Baseline) -> Result<()> {
    let Some(identity) = baseline.identity() else {
        return Ok(());
    };
    let path = store.path().to_path_buf();
    if already_seeded(store.conn(), &path, &identity)? {
        return Ok(());
    }
    let started = Instant::now();
    let mut trace = baseline.trace_codes().await?;
    // In key order, every insert appends to the table's B-tree instead of landing at random.
    trace.sort_unstable_by(|a, b| a.trace_code.cmp(&b.trace_code));
    let tx = store
        .conn()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err(&path, "begin", e))?;
    // Another instance may have seeded it meanwhile (the check above ran outside the lock).
    if already_seeded(&tx, &path, &identity)? {
        return Ok(());
    }
    {
        let mut st = tx
            .prepare(
                "INSERT INTO trace_codes (trace_code, event_time_ms, event_id, enterprise_id, product_id, biz_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (trace_code) DO UPDATE SET event_time_ms = excluded.event_time_ms,
                     event_id = excluded.event_id, enterprise_id = excluded.enterprise_id,
                     product_id = excluded.product_id, biz_date = excluded.biz_date
                 WHERE (excluded.event_time_ms, excluded.event_id) < (trace_codes.event_time_ms, trace_codes.event_id)",
            )
            .map_err(|e| sql_err(&path, "seed trace codes", e))?;
        for t in &trace {
            st.execute(params![
                t.trace_code,
                t.event_time.timestamp_millis(),
                t.event_id,
                t.enterprise_id,
                t.product_id,
                t.biz_date.format("%Y-%m-%d").to_string()
            ])
            .map_err(|e| sql_err(&path, "seed trace codes", e))?;
        }
    }
    tx.execute(
        "INSERT INTO stream_seeded (baseline, rows, seeded_at) VALUES (?1, ?2, ?3)",
        params![identity, trace.len() as i64, Utc::now().to_rfc3339()],
    )
    .map_err(|e| sql_err(&path, "record stream_seeded", e))?;
    tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
    eprintln!(
        "stream: seeded {} trace codes from the baseline in {:.1} s",
        trace.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Envelope of a dead letter on the dead-letter topic.
#[derive(Debug, Serialize)]
struct DeadLetterEnvelope<'a> {
    source_topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<&'a str>,
    kind: &'a str,
    field: &'a str,
    reason: &'a str,
    raw: &'a str,
    received_at: String,
}

struct Outgoing {
    seq: i64,
    role: String,
    key: String,
    payload: String,
}

/// The running service.
struct Service {
    cfg: StreamConfig,
    engine: Engine,
    store: Store,
    consumer: BaseConsumer<Ctx>,
    producer: FutureProducer<DefaultClientContext>,
    metrics: &'static StreamMetrics,
    health: Arc<Mutex<Health>>,
    assigned: HashSet<(String, i32)>,
    states: HashMap<i32, PartitionState>,
    summary: RunSummary,
    rt: tokio::runtime::Handle,
    assigned_at: Instant,
    resume: HashMap<(String, i32), Resume>,
    /// Topic-partitions sought since the pending messages were last cleaned: what was
    /// polled for them before the seek is stale (see [`Pending::drop_sought`]).
    sought: HashSet<(String, i32)>,
}

/// A topic-partition resuming from the store's offset: until its first message at or before
/// `next` arrives, a later first message means the broker skipped records (some brokers
/// answer a fetch from the middle of a record batch with the next batch), so the consumer
/// rewinds (`from` is the offset it last asked for) and skips what the store already holds.
///
/// The same broker answers a fetch from the middle of the *last* record batch with nothing
/// at all, so a resume that sees no message while the partition holds more than `next` is
/// rewound as well (`since` is when the position was last set).
#[derive(Debug, Clone, Copy)]
struct Resume {
    next: i64,
    from: i64,
    since: Instant,
}

impl Resume {
    fn at(next: i64) -> Self {
        Resume {
            next,
            from: next,
            since: Instant::now(),
        }
    }

    /// The position to rewind to next: further back each time, down to the start.
    fn further_back(&self) -> Resume {
        let back = (self.next - self.from).max(512) * 4;
        Resume {
            next: self.next,
            from: (self.next - back).max(0),
            since: Instant::now(),
        }
    }
}

/// How long a resuming topic-partition may stay silent while the broker holds more.
const RESUME_STALL: Duration = Duration::from_secs(3);

/// What decoding a message gave: the record, or the field and reason it was refused for.
type Decoded = std::result::Result<super::engine::Record, (String, String)>;

/// Decodes and validates messages, `None` for a message of no event topic; the order is
/// kept. Decoding is the costliest per-message step and needs nothing but the message: with
/// `split`, both halves of a large batch are decoded at once on two threads (the consuming
/// thread's own decoding); without, on the calling thread alone (decoding the next batch
/// beside the one being judged).
fn decode_all(
    cfg: &StreamConfig,
    sets: &pharmwatch_core::ingest::ReferenceSets,
    msgs: &[OwnedMessage],
    split: bool,
) -> Vec<Option<Decoded>> {
    let one = |m: &OwnedMessage| {
        cfg.kind_of(m.topic())
            .map(|k| decode(k, m.payload().unwrap_or_default(), sets))
    };
    if !split || msgs.len() < 1024 {
        return msgs.iter().map(one).collect();
    }
    let (a, b) = msgs.split_at(msgs.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| b.iter().map(one).collect::<Vec<_>>());
        let mut out: Vec<Option<Decoded>> = a.iter().map(one).collect();
        match second.join() {
            Ok(rest) => out.extend(rest),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        out
    })
}

/// One topic-partition's part of a micro-batch while it is routed.
struct TpRun {
    topic: String,
    partition: i32,
    kind: Option<EventKind>,
    /// Not this instance's (revoked) or sought since it was polled: left alone.
    skip: bool,
    /// Still resuming from the store's offset (see [`Resume`]).
    resuming: bool,
    /// The next offset to apply.
    next: i64,
    /// Consumed, accepted, rejected, late.
    counts: [i64; 4],
    first: Option<i64>,
    replayed: u64,
    /// (offset, producer timestamp) of the accepted messages, in offset order.
    timestamps: Vec<(i64, i64)>,
}

/// Polled messages not yet judged, and the decoding of a prefix of them (the part decoded
/// ahead, beside the previous batch).
#[derive(Default)]
struct Pending {
    msgs: Vec<OwnedMessage>,
    decoded: Vec<Option<Decoded>>,
}

impl Pending {
    /// Drops the messages of topic-partitions in `sought`: a seek makes what was polled
    /// before it stale (the consumer delivers again from the new position).
    fn drop_sought(&mut self, sought: &HashSet<(String, i32)>) {
        if sought.is_empty() {
            return;
        }
        let n = self.decoded.len();
        let mut keep = Vec::with_capacity(self.msgs.len());
        let mut kept_decoded = Vec::with_capacity(n);
        let mut decoded = std::mem::take(&mut self.decoded).into_iter();
        for (i, m) in std::mem::take(&mut self.msgs).into_iter().enumerate() {
            let d = if i < n { decoded.next() } else { None };
            if sought.contains(&(m.topic().to_string(), m.partition())) {
                continue;
            }
            if let Some(d) = d {
                kept_decoded.push(d);
            }
            keep.push(m);
        }
        self.msgs = keep;
        self.decoded = kept_decoded;
    }
}

/// Books the time since `since` to `phase` (metrics and run summary); returns now.
fn spent(
    metrics: &StreamMetrics,
    summary: &mut RunSummary,
    phase: &str,
    since: Instant,
) -> Instant {
    let now = Instant::now();
    let secs = (now - since).as_secs_f64();
    metrics
        .phase_seconds
        .with_label_values(&[phase])
        .inc_by(secs);
    *summary.phase_seconds.entry(phase.to_string()).or_default() += secs;
    now
}

impl Service {
    /// The next offset the store holds for a topic-partition (0 when never read).
    fn next_offset(&self, topic: &str, p: i32) -> i64 {
        self.states
            .get(&p)
            .and_then(|s| s.offsets.get(topic))
            .copied()
            .unwrap_or(0)
    }

    /// The high watermarks known now (from statistics or a fresh broker query).
    fn high_snapshot(&self) -> HashMap<(String, i32), i64> {
        self.consumer
            .context()
            .high
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    fn holding(&self) -> impl Fn(EventKind, i32) -> bool + '_ {
        let high = self.high_snapshot();
        move |k: EventKind, p: i32| {
            let topic = self.cfg.topic(k);
            let next = self.next_offset(&topic, p);
            match high.get(&(topic, p)) {
                Some(h) => next < *h,
                None => true,
            }
        }
    }

    fn apply_rebalances(&mut self) -> Result<()> {
        let events: Vec<Reb> = match self.consumer.context().rebalances.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return Err(PipelineError::Internal("rebalance lock poisoned".into())),
        };
        for ev in events {
            match ev {
                Reb::Assign(list) => {
                    self.assigned_at = Instant::now();
                    eprintln!(
                        "stream: assigned {}",
                        list.iter()
                            .map(|(t, p)| format!("{t}[{p}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    self.assigned.extend(list);
                }
                Reb::Revoke(list) => {
                    for tp in &list {
                        self.assigned.remove(tp);
                        self.resume.remove(tp);
                    }
                    let keep: HashSet<i32> = self.assigned.iter().map(|(_, p)| *p).collect();
                    self.states.retain(|p, _| keep.contains(p));
                    eprintln!("stream: revoked {} topic-partitions", list.len());
                }
            }
        }
        let parts: HashSet<i32> = self.assigned.iter().map(|(_, p)| *p).collect();
        let missing: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.states.contains_key(p))
            .collect();
        if !missing.is_empty() {
            let path = self.store.path().to_path_buf();
            let tx = self
                .store
                .conn()
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sql_err(&path, "begin", e))?;
            for p in missing {
                let st = PartitionState::load(&tx, &path, p)?;
                let removed = remove_uncommitted(&self.cfg.lake, &self.cfg, &st)?;
                if removed > 0 {
                    eprintln!(
                        "stream: partition {p}: removed {removed} lake file(s) of an unfinished batch"
                    );
                }
                for (topic, next) in &st.offsets {
                    if *next > 0 {
                        self.resume.insert((topic.clone(), p), Resume::at(*next));
                    }
                }
                self.states.insert(p, st);
            }
            tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        }
        let mut ps: Vec<i32> = parts.into_iter().collect();
        ps.sort_unstable();
        self.metrics.assigned_partitions.set(ps.len() as i64);
        if let Ok(mut h) = self.health.lock() {
            h.assigned_partitions = ps;
        }
        Ok(())
    }

    /// Processes one micro-batch (possibly empty: then only closes days). `decoded` is the
    /// decoding of a prefix of `msgs` (done ahead); the rest is decoded here.
    fn process(
        &mut self,
        msgs: Vec<OwnedMessage>,
        mut decoded: Vec<Option<Decoded>>,
    ) -> Result<()> {
        loop {
            if decoded.len() < msgs.len() {
                let started = Instant::now();
                let rest = decode_all(
                    &self.cfg,
                    &self.engine.reference.sets,
                    &msgs[decoded.len()..],
                    true,
                );
                decoded.extend(rest);
                spent(self.metrics, &mut self.summary, "decode", started);
            }
            let Some(fenced) = self.process_once(&msgs, std::mem::take(&mut decoded))? else {
                return Ok(());
            };
            for p in fenced {
                eprintln!("stream: partition {p} was taken over by another instance; leaving it");
                self.states.remove(&p);
                self.assigned.retain(|(_, q)| *q != p);
                self.resume.retain(|(_, q), _| *q != p);
            }
        }
    }

    /// One attempt at a micro-batch (`decoded` is the decoding of every message):
    /// `Some(partitions)` when some partitions turned out to be owned by another instance
    /// (nothing was written; redo without them).
    fn process_once(
        &mut self,
        msgs: &[OwnedMessage],
        decoded: Vec<Option<Decoded>>,
    ) -> Result<Option<Vec<i32>>> {
        let started = Instant::now();
        let path = self.store.path().to_path_buf();
        let mut accepted: Vec<Accepted> = Vec::with_capacity(msgs.len());
        let mut rejected: Vec<Rejected> = Vec::new();
        // What the batch holds per topic-partition, found by a short scan (a batch holds a
        // few dozen topic-partitions and their messages come in runs).
        let mut runs: Vec<TpRun> = Vec::new();
        let mut last = usize::MAX;
        let mut decoded = decoded.into_iter();
        for m in msgs {
            let decoded = decoded.next().flatten();
            let p = m.partition();
            let topic = m.topic();
            if last >= runs.len() || runs[last].partition != p || runs[last].topic != topic {
                last = match runs
                    .iter()
                    .position(|r| r.partition == p && r.topic == topic)
                {
                    Some(i) => i,
                    None => {
                        let tp = (topic.to_string(), p);
                        runs.push(TpRun {
                            // Revoked while the batch was collected: the new owner reads it.
                            // Every message of the batch was polled before any seek made now.
                            skip: !self.assigned.contains(&tp) || self.sought.contains(&tp),
                            resuming: self.resume.contains_key(&tp),
                            kind: self.cfg.kind_of(topic),
                            next: self.next_offset(topic, p),
                            topic: tp.0,
                            partition: p,
                            counts: [0; 4],
                            first: None,
                            replayed: 0,
                            timestamps: Vec::new(),
                        });
                        runs.len() - 1
                    }
                };
            }
            let run = &mut runs[last];
            if run.skip {
                continue;
            }
            if run.resuming {
                let tp = (run.topic.clone(), p);
                if let Some(r) = self.resume.get(&tp).copied() {
                    if m.offset() <= r.next || r.from == 0 {
                        if m.offset() > r.next {
                            let lost = m.offset() - r.next;
                            eprintln!(
                                "stream: {topic}[{p}]: offsets {}..{} are gone from the broker (retention?); {lost} message(s) cannot be read",
                                r.next,
                                m.offset()
                            );
                            self.metrics
                                .gap
                                .with_label_values(&[p.to_string().as_str()])
                                .inc_by(lost as u64);
                        }
                        self.resume.remove(&tp);
                    } else {
                        let back = r.further_back();
                        self.consumer
                            .seek(topic, p, Offset::Offset(back.from), Duration::from_secs(10))
                            .map_err(|e| {
                                kafka_err(format!("seek {topic}[{p}] to {}", back.from), e)
                            })?;
                        self.resume.insert(tp.clone(), back);
                        self.sought.insert(tp);
                        run.skip = true;
                        continue;
                    }
                }
                run.resuming = false;
            }
            let Some(kind) = run.kind else {
                continue;
            };
            // The next offset to apply: the store's, advanced by this batch (a rewind can
            // deliver a message twice within one batch).
            if m.offset() < run.next {
                run.replayed += 1;
                continue;
            }
            run.next = m.offset() + 1;
            run.counts[0] += 1;
            run.first.get_or_insert(m.offset());
            let Some(decoded) = decoded else {
                continue;
            };
            let source = Source {
                topic: run.topic.clone(),
                partition: p,
                offset: m.offset(),
            };
            match decoded {
                Ok(record) => {
                    run.counts[1] += 1;
                    if let Some(ts) = m.timestamp().to_millis() {
                        run.timestamps.push((m.offset(), ts));
                    }
                    accepted.push(Accepted { source, record });
                }
                Err((field, reason)) => {
                    run.counts[2] += 1;
                    self.metrics
                        .rejected
                        .with_label_values(&[kind.as_str(), field.as_str()])
                        .inc();
                    rejected.push(Rejected {
                        source,
                        kind: kind.as_str().to_string(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        field,
                        reason,
                        raw: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    });
                }
            }
        }
        let mut counts: HashMap<(String, i32), [i64; 4]> = HashMap::new();
        let mut first_offset: HashMap<(String, i32), i64> = HashMap::new();
        let mut seen: HashMap<(String, i32), i64> = HashMap::new();
        for run in &runs {
            let Some(kind) = run.kind.filter(|_| !run.skip || run.counts[0] > 0) else {
                continue;
            };
            if run.replayed > 0 {
                self.metrics
                    .replayed
                    .with_label_values(&[kind.as_str()])
                    .inc_by(run.replayed);
                self.summary.replayed += run.replayed;
            }
            let tp = (run.topic.clone(), run.partition);
            seen.insert(tp.clone(), run.next);
            if run.counts[0] > 0 {
                self.metrics
                    .consumed
                    .with_label_values(&[kind.as_str()])
                    .inc_by(run.counts[0] as u64);
                counts.insert(tp.clone(), run.counts);
            }
            if let Some(first) = run.first {
                first_offset.insert(tp, first);
            }
        }
        // The producer's timestamp of a message, for the detection latency of its events.
        let timestamp_of = |s: &Source| -> Option<i64> {
            let run = runs
                .iter()
                .find(|r| r.partition == s.partition && r.topic == s.topic)?;
            let i = run
                .timestamps
                .binary_search_by_key(&s.offset, |(o, _)| *o)
                .ok()?;
            Some(run.timestamps[i].1)
        };

        let mut t = spent(self.metrics, &mut self.summary, "decode", started);

        // 2. One transaction for everything the batch produced. A day closes on the
        // statistics' high watermarks, which lag by up to their interval: before closing,
        // ask the broker for fresh ones, so a topic that only looks read to its end does
        // not let the watermark run ahead of records already on the broker.
        let closing: Vec<i32> = {
            // An upper bound of each partition's watermark after this batch.
            let mut upper: HashMap<i32, i64> = HashMap::new();
            for (p, st) in &self.states {
                if let Some(m) = st.meta.max_event_ms.values().max() {
                    upper.insert(*p, *m);
                }
            }
            for a in &accepted {
                let ms = a.record.event_time().timestamp_millis();
                let e = upper.entry(a.source.partition).or_insert(ms);
                *e = (*e).max(ms);
            }
            self.states
                .iter()
                .filter(|(p, st)| self.engine.would_close(st, upper.get(p).copied()))
                .map(|(p, _)| *p)
                .collect()
        };
        // Only a topic-partition that looks read to its end can let the watermark pass the
        // day; one the statistics already show behind holds it anyway. The query goes through
        // the producer's connection: on the consumer's, it would queue behind a long-poll
        // fetch (up to `fetch.wait.max.ms` per query).
        let stats_high = self.high_snapshot();
        for p in closing {
            for (topic, tp) in self.assigned.iter().filter(|(_, q)| *q == p) {
                let key = (topic.clone(), *tp);
                let next = seen
                    .get(&key)
                    .copied()
                    .unwrap_or_else(|| self.next_offset(topic, *tp));
                if stats_high.get(&key).is_some_and(|h| *h > next) {
                    continue;
                }
                match self
                    .producer
                    .client()
                    .fetch_watermarks(topic, *tp, Duration::from_secs(5))
                {
                    Ok((_, hi)) => {
                        if let Ok(mut high) = self.consumer.context().high.lock() {
                            high.insert(key, hi);
                        }
                    }
                    Err(e) => {
                        // Unknown: hold the day open until the statistics catch up.
                        eprintln!("stream: high watermark of {topic}[{tp}]: {e}");
                        if let Ok(mut high) = self.consumer.context().high.lock() {
                            high.remove(&key);
                        }
                    }
                }
            }
        }
        let holding_snapshot: HashMap<(EventKind, i32), bool> = {
            let h = self.holding();
            let mut m = HashMap::new();
            for p in self.states.keys() {
                for k in EventKind::ALL {
                    m.insert((*k, *p), h(*k, *p));
                }
            }
            m
        };
        t = spent(self.metrics, &mut self.summary, "watermarks", t);
        let now = Utc::now();
        let tx = self
            .store
            .conn()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, "begin", e))?;
        // Fencing: a partition another instance has taken over since this one loaded it is
        // left alone; the batch is redone without it.
        let mut fenced = Vec::new();
        for (p, st) in &self.states {
            if !st.owned(&tx, &path)? {
                fenced.push(*p);
            }
        }
        if !fenced.is_empty() {
            drop(tx);
            return Ok(Some(fenced));
        }
        // 1. Lake files, written whole while the transaction holds the store's write lock
        // (no other instance can take a partition over in between).
        let mut by_file: BTreeMap<(EventKind, i32, NaiveDate), Vec<&Accepted>> = BTreeMap::new();
        for a in &accepted {
            by_file
                .entry((
                    a.record.kind(),
                    a.source.partition,
                    biz_date(a.record.event_time()),
                ))
                .or_default()
                .push(a);
        }
        // Two threads from here: this one judges the batch record by record through the
        // transaction, while a second converts it to Arrow once per lake file, computes the
        // window deltas with DataFusion over those batches and writes the Parquet files. The
        // engine takes the deltas once its record rules are done; the transaction commits after
        // both threads are done (a failed write rolls the batch back; its files are removed at
        // the next start).
        let lake_dir = self.cfg.lake.clone();
        let named: Vec<_> = by_file
            .iter()
            .map(|(key, recs)| {
                let first = first_offset
                    .get(&(self.cfg.topic(key.0), key.1))
                    .copied()
                    .unwrap_or(0);
                (*key, recs, first)
            })
            .collect();
        let rt = self.rt.clone();
        let lake_started = Instant::now();
        let (outcome, written) = std::thread::scope(|s| {
            let (deltas_tx, deltas_rx) = std::sync::mpsc::channel::<Result<Vec<Delta>>>();
            let worker = s.spawn(move || -> Result<[(&'static str, f64); 3]> {
                let mut lake: HashMap<EventKind, Vec<RecordBatch>> = HashMap::new();
                let mut files: Vec<(PathBuf, EventKind, RecordBatch)> = Vec::new();
                let mut convert = || -> Result<()> {
                    for ((kind, p, day), recs, first) in &named {
                        let b = super::engine::lake_batch(*kind, recs)?;
                        let file = pharmwatch_core::lake::day_dir(&lake_dir, *kind, *day)
                            .join(format!("stream-p{p:03}-o{first:012}.parquet"));
                        files.push((file, *kind, b.clone()));
                        lake.entry(*kind).or_default().push(b);
                    }
                    Ok(())
                };
                let converted = convert();
                let convert_secs = lake_started.elapsed().as_secs_f64();
                match converted {
                    Ok(()) => {
                        let _ = deltas_tx.send(rt.block_on(window_deltas(&lake)));
                    }
                    Err(e) => {
                        let _ = deltas_tx.send(Err(PipelineError::Internal(format!(
                            "lake conversion failed: {e}"
                        ))));
                        return Err(e);
                    }
                }
                drop(deltas_tx);
                let deltas_secs = lake_started.elapsed().as_secs_f64() - convert_secs;
                let writing = Instant::now();
                for (file, kind, b) in &files {
                    write_parquet(file, kind.lake_schema(), std::slice::from_ref(b))?;
                }
                Ok([
                    ("lake", convert_secs),
                    ("engine_deltas", deltas_secs),
                    ("lake_write", writing.elapsed().as_secs_f64()),
                ])
            });
            let outcome = self.engine.process(
                &tx,
                &path,
                &mut self.states,
                &accepted,
                || {
                    deltas_rx.recv().unwrap_or_else(|_| {
                        Err(PipelineError::Internal(
                            "the lake thread ended without window deltas".into(),
                        ))
                    })
                },
                &|k, p| holding_snapshot.get(&(k, p)).copied().unwrap_or(true),
            );
            match worker.join() {
                Ok(w) => (outcome, w),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let beside = written?;
        let mut outcome = outcome?;
        for (phase, secs) in beside {
            self.metrics
                .phase_seconds
                .with_label_values(&[phase])
                .inc_by(secs);
            *self.summary.phase_seconds.entry(phase.into()).or_default() += secs;
        }
        t = spent(self.metrics, &mut self.summary, "engine", t);
        for (step, secs) in std::mem::take(&mut outcome.steps) {
            self.metrics
                .phase_seconds
                .with_label_values(&[&format!("engine_{step}")])
                .inc_by(secs);
            *self
                .summary
                .phase_seconds
                .entry(format!("engine_{step}"))
                .or_default() += secs;
        }
        for r in &rejected {
            let st = self.states.get_mut(&r.source.partition).ok_or_else(|| {
                PipelineError::Internal(format!("no state for partition {}", r.source.partition))
            })?;
            let next = st.offsets.entry(r.source.topic.clone()).or_insert(0);
            *next = (*next).max(r.source.offset + 1);
            let env = DeadLetterEnvelope {
                source_topic: &r.source.topic,
                partition: r.source.partition,
                offset: r.source.offset,
                key: r.key.as_deref(),
                kind: &r.kind,
                field: &r.field,
                reason: &r.reason,
                raw: &r.raw,
                received_at: now.to_rfc3339(),
            };
            let payload =
                serde_json::to_string(&env).map_err(|e| PipelineError::Internal(e.to_string()))?;
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO dead_letters (source_topic, source_partition, source_offset,
                         kind, field, reason, raw, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![r.source.topic, r.source.partition, r.source.offset, r.kind, r.field, r.reason, r.raw, now.to_rfc3339()],
                )
                .map_err(|e| sql_err(&path, "insert dead letter", e))?;
            if new > 0 {
                tx.execute(
                    "INSERT INTO outbox (topic_role, message_key, payload, created_at) VALUES ('dead_letter', ?1, ?2, ?3)",
                    params![format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset), payload, now.to_rfc3339()],
                )
                .map_err(|e| sql_err(&path, "outbox", e))?;
            }
        }
        let mut new_events: Vec<RiskEvent> = Vec::new();
        for mut ev in outcome.events {
            ev.source_timestamp_ms = timestamp_of(&ev.source);
            let item = serde_json::to_string(&ev.item)
                .map_err(|e| PipelineError::Internal(e.to_string()))?;
            let new = tx
                .execute(
                    "INSERT OR IGNORE INTO risk_events (id, indicator, enterprise_id, product_id, biz_date,
                         event_time, detected_at, source_topic, source_partition, source_offset, score, grade, item_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        ev.id,
                        ev.indicator,
                        ev.enterprise_id,
                        ev.product_id,
                        ev.biz_date.to_string(),
                        ev.event_time.to_rfc3339(),
                        ev.detected_at.to_rfc3339(),
                        ev.source.topic,
                        ev.source.partition,
                        ev.source.offset,
                        ev.score,
                        ev.grade,
                        item
                    ],
                )
                .map_err(|e| sql_err(&path, "insert risk event", e))?;
            if new > 0 {
                let payload = serde_json::to_string(&ev)
                    .map_err(|e| PipelineError::Internal(e.to_string()))?;
                tx.execute(
                    "INSERT INTO outbox (topic_role, message_key, payload, created_at) VALUES ('risk_event', ?1, ?2, ?3)",
                    params![ev.id, payload, now.to_rfc3339()],
                )
                .map_err(|e| sql_err(&path, "outbox", e))?;
                new_events.push(ev);
            }
        }
        for ((topic, p), n) in &outcome.late {
            counts.entry((topic.clone(), *p)).or_default()[3] += *n as i64;
        }
        for ((topic, p), c) in &counts {
            tx.execute(
                "INSERT INTO stream_counts (topic, partition, consumed, accepted, rejected, late)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (topic, partition) DO UPDATE SET consumed = consumed + excluded.consumed,
                     accepted = accepted + excluded.accepted, rejected = rejected + excluded.rejected,
                     late = late + excluded.late",
                params![topic, p, c[0], c[1], c[2], c[3]],
            )
            .map_err(|e| sql_err(&path, "counts", e))?;
        }
        for st in self.states.values_mut() {
            st.save(&tx, &path)?;
        }
        t = spent(self.metrics, &mut self.summary, "store", t);
        tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        t = spent(self.metrics, &mut self.summary, "commit", t);

        // Metrics of what is now durable.
        for ((topic, _), c) in &counts {
            if let Some(kind) = self.cfg.kind_of(topic) {
                self.metrics
                    .accepted
                    .with_label_values(&[kind.as_str()])
                    .inc_by(c[1] as u64);
                self.metrics
                    .late
                    .with_label_values(&[kind.as_str()])
                    .inc_by(c[3] as u64);
            }
            self.summary.consumed += c[0] as u64;
            self.summary.accepted += c[1] as u64;
            self.summary.rejected += c[2] as u64;
            self.summary.late += c[3] as u64;
        }
        for ev in &new_events {
            self.metrics
                .risk_events
                .with_label_values(&[ev.indicator.as_str()])
                .inc();
            if let Some(ts) = ev.source_timestamp_ms {
                let secs = (ev.detected_at.timestamp_millis() - ts) as f64 / 1000.0;
                self.metrics
                    .detection_seconds
                    .with_label_values(&[] as &[&str])
                    .observe(secs.max(0.0));
            }
        }
        self.summary.risk_events += new_events.len() as u64;

        // 3. Publish the outbox, 4. commit offsets to Kafka.
        self.publish_outbox()?;
        self.commit_offsets();
        spent(self.metrics, &mut self.summary, "publish", t);
        if !msgs.is_empty() {
            self.summary.batches += 1;
            self.metrics
                .batch_seconds
                .with_label_values(&[] as &[&str])
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .batch_records
                .with_label_values(&[] as &[&str])
                .observe(msgs.len() as f64);
        }
        self.update_gauges();
        Ok(None)
    }

    fn update_gauges(&self) {
        let high = self.high_snapshot();
        for (topic, p) in &self.assigned {
            let Some(kind) = self.cfg.kind_of(topic) else {
                continue;
            };
            let next = self.next_offset(topic, *p);
            if let Some(h) = high.get(&(topic.clone(), *p)) {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[kind.as_str(), &p.to_string()])
                    .set((h - next).max(0));
            }
        }
        let holding = self.holding();
        for (p, st) in &self.states {
            if let Some(wm) = st.watermark(&|k| holding(k, *p)) {
                self.metrics
                    .watermark
                    .with_label_values(&[&p.to_string()])
                    .set(wm as f64 / 1000.0);
            }
        }
    }

    fn publish_outbox(&mut self) -> Result<()> {
        let path = self.store.path().to_path_buf();
        loop {
            let pending: Vec<Outgoing> = {
                let conn = self.store.conn();
                let mut st = conn
                    .prepare_cached(
                        "SELECT seq, topic_role, message_key, payload FROM outbox
                         WHERE published_at IS NULL ORDER BY seq LIMIT 5000",
                    )
                    .map_err(|e| sql_err(&path, "read outbox", e))?;
                let rows = st
                    .query_map([], |r| {
                        Ok(Outgoing {
                            seq: r.get(0)?,
                            role: r.get(1)?,
                            key: r.get(2)?,
                            payload: r.get(3)?,
                        })
                    })
                    .map_err(|e| sql_err(&path, "read outbox", e))?;
                rows.collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| sql_err(&path, "read outbox", e))?
            };
            if pending.is_empty() {
                self.metrics.outbox_pending.set(0);
                return Ok(());
            }
            let producer = &self.producer;
            let cfg = &self.cfg;
            let results = self.rt.block_on(async {
                let sends = pending.iter().map(|o| {
                    let topic = if o.role == "risk_event" {
                        cfg.risk_events_topic.as_str()
                    } else {
                        cfg.dead_letter_topic.as_str()
                    };
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "pharmwatch-kind",
                            value: Some(o.role.as_str()),
                        })
                        .insert(Header {
                            key: "pharmwatch-id",
                            value: Some(o.key.as_str()),
                        });
                    let rec = FutureRecord::to(topic)
                        .key(&o.key)
                        .payload(&o.payload)
                        .headers(headers);
                    producer.send(rec, Duration::from_secs(30))
                });
                futures::future::join_all(sends).await
            });
            let mut sent = Vec::new();
            let mut failure = None;
            for (o, r) in pending.iter().zip(results) {
                match r {
                    Ok(_) => sent.push(o.seq),
                    Err((e, _)) => failure = Some(e),
                }
            }
            let now = Utc::now().to_rfc3339();
            let conn = self.store.conn();
            let tx = conn.transaction().map_err(|e| sql_err(&path, "begin", e))?;
            {
                let mut up = tx
                    .prepare_cached("UPDATE outbox SET published_at = ?2 WHERE seq = ?1")
                    .map_err(|e| sql_err(&path, "mark outbox", e))?;
                for s in &sent {
                    up.execute(params![s, now])
                        .map_err(|e| sql_err(&path, "mark outbox", e))?;
                }
            }
            tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
            if let Some(e) = failure {
                // Left in the outbox: sent on the next batch or at the next start.
                eprintln!("stream: publishing to Kafka failed ({e}); will retry");
                let left = pending.len() - sent.len();
                self.metrics.outbox_pending.set(left as i64);
                return Ok(());
            }
        }
    }

    fn commit_offsets(&self) {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &self.assigned {
            if let Some(next) = self.states.get(p).and_then(|s| s.offsets.get(topic)) {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            eprintln!("stream: offset commit failed ({e}); the store holds the offsets");
        }
    }

    /// Rewinds resuming topic-partitions that stayed silent although the broker holds
    /// messages past the store's offset (see [`Resume`]). A failed seek is retried later.
    fn rewind_stalled(&mut self) {
        let stats = self.high_snapshot();
        let due: Vec<((String, i32), Resume)> = self
            .resume
            .iter()
            .filter(|(_, r)| r.since.elapsed() >= RESUME_STALL)
            .map(|(tp, r)| (tp.clone(), *r))
            .collect();
        let mut stalled = Vec::new();
        for (tp, r) in due {
            // The statistics may not know a partition that never answered a fetch: ask.
            let high = match stats.get(&tp) {
                Some(h) => Some(*h),
                None => self
                    .producer
                    .client()
                    .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5))
                    .ok()
                    .map(|(_, h)| h),
            };
            if high.is_some_and(|h| h > r.next) {
                stalled.push((tp, r));
            } else {
                self.resume.insert(
                    tp,
                    Resume {
                        since: Instant::now(),
                        ..r
                    },
                );
            }
        }
        for ((topic, p), r) in stalled {
            let back = r.further_back();
            match self.consumer.seek(
                &topic,
                p,
                Offset::Offset(back.from),
                Duration::from_secs(10),
            ) {
                Ok(()) => {
                    eprintln!(
                        "stream: {topic}[{p}]: nothing arrived from offset {}; reading again from {}",
                        r.next, back.from
                    );
                    self.sought.insert((topic.clone(), p));
                }
                Err(e) => eprintln!(
                    "stream: {topic}[{p}]: seek to {} failed ({e}); will retry",
                    back.from
                ),
            }
            self.resume.insert((topic, p), back);
        }
    }

    /// Logs where each lagging topic-partition stands (for an operator, when the service
    /// makes no progress although the broker holds unread messages).
    fn log_stall(&self) {
        let high = self.high_snapshot();
        let mut parts = Vec::new();
        for (topic, p) in &self.assigned {
            let next = self.next_offset(topic, *p);
            let h = high.get(&(topic.clone(), *p)).copied();
            if h.is_none_or(|h| h > next) {
                let resume = self
                    .resume
                    .get(&(topic.clone(), *p))
                    .map(|r| format!(", re-reading from {}", r.from))
                    .unwrap_or_default();
                parts.push(format!(
                    "{topic}[{p}] at {next} of {}{resume}",
                    h.map_or("?".to_string(), |h| h.to_string())
                ));
            }
        }
        if !parts.is_empty() {
            parts.sort();
            eprintln!("stream: no progress for 30 s: {}", parts.join("; "));
        }
    }

    fn high_known(&self) -> bool {
        let Ok(high) = self.consumer.context().high.lock() else {
            return false;
        };
        self.assigned.iter().all(|tp| high.contains_key(tp))
    }

    fn all_read(&self) -> bool {
        let h = self.holding();
        !self.assigned.is_empty()
            && self
                .assigned
                .iter()
                .all(|(t, p)| self.cfg.kind_of(t).is_none_or(|k| !h(k, *p)))
    }
}

/// Runs the service until `shutdown` is set (finishing the batch in hand), or until idle when
/// [`RunOptions::exit_when_idle`] is set.
pub async fn run(
    cfg: StreamConfig,
    opts: RunOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let reference = Reference::load(&cfg.lake).await?;
    let baseline = match &cfg.baseline {
        Some(dir) => Baseline::load(dir).await?,
        None => Baseline::default(),
    };
    let mut store = Store::open_stream(&cfg.store)?;
    seed_trace_codes(&mut store, &baseline).await?;

    let ctx = Ctx {
        rebalances: Mutex::new(Vec::new()),
        high: Mutex::new(HashMap::new()),
    };
    let consumer: BaseConsumer<Ctx> = {
        let mut c = client_config(&cfg);
        c.set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "range")
            .set("statistics.interval.ms", "250")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // A fetch that finds nothing new waits at most this long: it bounds how long a
            // record produced into a quiet partition waits before the service sees it.
            .set("fetch.wait.max.ms", "100");
        if let Some(id) = &cfg.instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in &cfg.kafka {
            c.set(k, v);
        }
        c.create_with_context(ctx)
            .map_err(|e| kafka_err(format!("consumer for {}", cfg.brokers), e))?
    };
    let producer: FutureProducer = {
        let mut c = client_config(&cfg);
        c.set("acks", "all").set("linger.ms", "5");
        c.create()
            .map_err(|e| kafka_err(format!("producer for {}", cfg.brokers), e))?
    };
    check_topics(&consumer, &cfg)?;
    let topics: Vec<String> = EventKind::ALL.iter().map(|k| cfg.topic(*k)).collect();
    let refs: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    consumer
        .subscribe(&refs)
        .map_err(|e| kafka_err(format!("subscribe to {}", topics.join(", ")), e))?;

    let metrics = metrics::stream();
    let health = Arc::new(Mutex::new(Health {
        status: "ok",
        last_poll_unix: Utc::now().timestamp(),
        ..Health::default()
    }));
    let http = serve_http(cfg.metrics_listen.clone(), health.clone()).await?;
    eprintln!(
        "stream: group {} on {}; metrics on http://{}/metrics; lake {}; store {}",
        cfg.group_id,
        cfg.brokers,
        cfg.metrics_listen,
        cfg.lake.display(),
        cfg.store.display()
    );

    let rt = tokio::runtime::Handle::current();
    let engine = Engine {
        reference,
        baseline,
        lateness_ms: cfg.allowed_lateness_secs * 1000,
        thresholds: cfg.thresholds.clone(),
    };
    let batch_max = cfg.batch_max_records;
    let wait = Duration::from_millis(cfg.batch_max_wait_ms);
    let mut svc = Service {
        cfg,
        engine,
        store,
        consumer,
        producer,
        metrics,
        health: health.clone(),
        assigned: HashSet::new(),
        states: HashMap::new(),
        summary: RunSummary::default(),
        rt: rt.clone(),
        assigned_at: Instant::now(),
        resume: HashMap::new(),
        sought: HashSet::new(),
    };
    // Decoding the next batch beside the current one needs the topic names and reference
    // sets while the service is borrowed for judging: its own copies.
    let decode_cfg = svc.cfg.clone();
    let decode_sets = svc.engine.reference.sets.clone();
    let result = tokio::task::block_in_place(|| -> Result<()> {
        svc.publish_outbox()?;
        let mut last_message = Instant::now();
        let mut last_idle_pass = Instant::now();
        let mut pending = Pending::default();
        let mut first_message: Option<Instant> = None;
        let mut progress = (0u64, Instant::now());
        while !shutdown.load(Ordering::SeqCst) {
            let deadline = Instant::now() + wait;
            let poll_started = Instant::now();
            while pending.msgs.len() < batch_max {
                let mut left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                // Once the batch has a message, take only what has already arrived: a
                // batch closes when the consumer's queue runs dry (small batches at a low
                // rate, full ones under a backlog), so no record waits for the time bound.
                if !pending.msgs.is_empty() {
                    left = left.min(Duration::from_millis(2));
                }
                match svc.consumer.poll(left) {
                    Some(Ok(m)) => {
                        // The clock of the sustained rate starts when the first message is
                        // in hand, as a bare consumer's does.
                        first_message.get_or_insert_with(Instant::now);
                        pending.msgs.push(m.detach());
                    }
                    Some(Err(e)) => {
                        eprintln!("stream: consumer error: {e}");
                        break;
                    }
                    None => break,
                }
                if shutdown.load(Ordering::SeqCst) {
                    break;
                }
            }
            spent(svc.metrics, &mut svc.summary, "poll", poll_started);
            if svc.summary.consumed != progress.0 {
                progress = (svc.summary.consumed, Instant::now());
            } else if progress.1.elapsed() >= Duration::from_secs(30) {
                svc.log_stall();
                progress.1 = Instant::now();
            }
            if let Ok(mut h) = health.lock() {
                h.last_poll_unix = Utc::now().timestamp();
                h.batches = svc.summary.batches;
            }
            svc.apply_rebalances()?;
            svc.rewind_stalled();
            pending.drop_sought(&svc.sought);
            svc.sought.clear();
            // The watermark needs each topic-partition's high watermark (from librdkafka's
            // statistics): hold the first batch until they are known, at most a few seconds.
            if !svc.high_known()
                && svc.assigned_at.elapsed() < Duration::from_secs(5)
                && pending.msgs.len() < batch_max
            {
                continue;
            }
            if !pending.msgs.is_empty() {
                // Under a backlog the next batch has already arrived: take it now (without
                // waiting) and decode it on a second thread while this one is judged. At a
                // low rate there is nothing yet and the next batch is polled as usual.
                let ahead_started = Instant::now();
                let mut ahead = Pending::default();
                while ahead.msgs.len() < batch_max {
                    match svc.consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => ahead.msgs.push(m.detach()),
                        Some(Err(e)) => {
                            eprintln!("stream: consumer error: {e}");
                            break;
                        }
                        None => break,
                    }
                }
                spent(svc.metrics, &mut svc.summary, "poll", ahead_started);
                // That poll may have served a rebalance: apply it before judging.
                svc.apply_rebalances()?;
                let current = std::mem::take(&mut pending);
                let (judged, decoded_ahead) = std::thread::scope(|s| {
                    let decoding = (!ahead.msgs.is_empty()).then(|| {
                        s.spawn(|| {
                            let t = Instant::now();
                            let d = decode_all(&decode_cfg, &decode_sets, &ahead.msgs, false);
                            (d, t.elapsed().as_secs_f64())
                        })
                    });
                    let judged = svc.process(current.msgs, current.decoded);
                    let decoded = decoding.map(|h| match h.join() {
                        Ok(d) => d,
                        Err(panic) => std::panic::resume_unwind(panic),
                    });
                    (judged, decoded)
                });
                judged?;
                if let Some((decoded, secs)) = decoded_ahead {
                    svc.metrics
                        .phase_seconds
                        .with_label_values(&["decode_ahead"])
                        .inc_by(secs);
                    *svc.summary
                        .phase_seconds
                        .entry("decode_ahead".into())
                        .or_default() += secs;
                    ahead.decoded = decoded;
                }
                pending = ahead;
                pending.drop_sought(&svc.sought);
                svc.sought.clear();
                last_message = Instant::now();
                if let Some(f) = first_message {
                    svc.summary.active_seconds = (last_message - f).as_secs_f64();
                }
            } else if last_idle_pass.elapsed() >= Duration::from_millis(500)
                && !svc.states.is_empty()
            {
                // Nothing arrived: days may still close as topics are read to their end.
                last_idle_pass = Instant::now();
                svc.process(Vec::new(), Vec::new())?;
                if let Some(idle) = opts.exit_when_idle
                    && last_message.elapsed() >= idle
                    && svc.all_read()
                {
                    break;
                }
            }
        }
        svc.commit_offsets();
        Ok(())
    });
    if let Ok(mut h) = health.lock() {
        h.status = if result.is_ok() { "stopping" } else { "failed" };
    }
    result?;
    svc.consumer.unsubscribe();
    http.abort();
    svc.summary.seconds = started.elapsed().as_secs_f64();
    Ok(svc.summary)
}

/// A path helper for tests and tools: the lake files the stream wrote.
pub fn stream_files(lake: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for kind in EventKind::ALL {
        let Ok(days) = std::fs::read_dir(lake.join(kind.as_str())) else {
            continue;
        };
        for d in days.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                out.extend(files.flatten().map(|f| f.path()).filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("stream-"))
                }));
            }
        }
    }
    out.sort();
    out
}

/// Creates the event, dead-letter and risk-events topics with `partitions` partitions each
/// (a topic that already exists is left as it is). Returns the topics created.
pub async fn create_topics(cfg: &StreamConfig, partitions: i32) -> Result<Vec<String>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = client_config(cfg)
        .create()
        .map_err(|e| kafka_err(format!("admin client for {}", cfg.brokers), e))?;
    let mut names: Vec<String> = EventKind::ALL.iter().map(|k| cfg.topic(*k)).collect();
    names.push(cfg.dead_letter_topic.clone());
    names.push(cfg.risk_events_topic.clone());
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(cfg.startup_timeout_secs.max(1))));
    let results = admin
        .create_topics(topics.iter(), &opts)
        .await
        .map_err(|e| kafka_err(format!("create topics on {}", cfg.brokers), e))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(kafka_err(format!("create topic {t}"), e)),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            topic.to_string(),
            rdkafka::Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn a_seek_drops_what_was_polled_before_it_for_that_topic_partition_only() {
        let mut pending = Pending {
            msgs: vec![
                msg("s", 0, 10),
                msg("s", 1, 20),
                msg("s", 0, 11),
                msg("p", 0, 5),
                msg("s", 1, 21),
            ],
            // The first three were decoded ahead.
            decoded: vec![
                Some(Err(("a".into(), "x".into()))),
                Some(Err(("b".into(), "x".into()))),
                None,
            ],
        };
        pending.drop_sought(&HashSet::new());
        assert_eq!(pending.msgs.len(), 5, "no seek, nothing dropped");
        let sought: HashSet<(String, i32)> = [("s".to_string(), 0)].into_iter().collect();
        pending.drop_sought(&sought);
        let left: Vec<(String, i32, i64)> = pending
            .msgs
            .iter()
            .map(|m| (m.topic().to_string(), m.partition(), m.offset()))
            .collect();
        assert_eq!(
            left,
            [("s".into(), 1, 20), ("p".into(), 0, 5), ("s".into(), 1, 21)]
        );
        // The decoding still belongs to the messages it was made for.
        assert_eq!(pending.decoded.len(), 1);
        assert!(matches!(&pending.decoded[0], Some(Err((f, _))) if f == "b"));
    }
}
