//! One micro-batch, steps 1 and 2 of the commit protocol: the messages are decoded (on two
//! threads for a large batch, or ahead, beside the previous batch), routed to their
//! topic-partitions, judged by the engine while a second thread writes the lake files, and
//! everything the batch produced — dead letters, risk events, counts, window state, next
//! offsets, outbox rows — is stored in one transaction, after the partitions are checked to
//! be still this instance's (fencing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::RecordBatch;
use pharmwatch_core::db::Value;
use pharmwatch_core::params;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::Offset;
use serde::Serialize;

use crate::error::{Result, StreamError};
use pharmwatch_core::error::{CoreError, ErrorClass};
use pharmwatch_core::fasthash::FastState;
use pharmwatch_core::faults;
use pharmwatch_core::remote_lake::LakeSource;
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::{EventKind, biz_date};

use super::consumer::kafka_err;
use super::{RunSummary, Service};
use crate::config::StreamConfig;
use crate::engine::{
    Accepted, BatchOutcome as Outcome, Delta, Engine, PartitionState, Rejected, RiskEvent, Seen,
    Source, decode, window_deltas,
};
use crate::metrics::StreamMetrics;

/// What decoding a message gave: the record, or the field and reason it was refused for.
pub(super) type Decoded = std::result::Result<crate::engine::Record, (String, String)>;

/// Decodes and validates messages, `None` for a message of no event topic; the order is
/// kept. Decoding is the costliest per-message step and needs nothing but the message: with
/// `split`, both halves of a large batch are decoded at once on two threads (the consuming
/// thread's own decoding); without, on the calling thread alone (decoding the next batch
/// beside the one being judged).
pub(super) fn decode_all(
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
pub(super) struct Pending {
    pub(super) msgs: Vec<OwnedMessage>,
    pub(super) decoded: Vec<Option<Decoded>>,
}

impl Pending {
    /// Drops the messages of topic-partitions in `sought`: a seek makes what was polled
    /// before it stale (the consumer delivers again from the new position).
    pub(super) fn drop_sought(&mut self, sought: &HashSet<(String, i32)>) {
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
pub(super) fn spent(
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

/// What a decoded record must also be to be accepted: keyed by its own enterprise (the key
/// the producers partition by — a missing key or another enterprise's puts the record in a
/// partition whose windows are not its own), and not dated further ahead of the clock than
/// `max_future_secs` (it would close open days early).
fn admit(
    record: crate::engine::Record,
    key: Option<&[u8]>,
    now_secs: i64,
    cfg: &StreamConfig,
) -> std::result::Result<crate::engine::Record, (String, String)> {
    let enterprise = record.enterprise_id();
    match key.map(std::str::from_utf8) {
        None => {
            return Err((
                "key".into(),
                format!("no message key: a record is keyed by its enterprise ({enterprise})"),
            ));
        }
        Some(Err(_)) => return Err(("key".into(), "the message key is not UTF-8".into())),
        Some(Ok(k)) if k != enterprise => {
            return Err((
                "key".into(),
                format!(
                    "the message key `{}` is not the record's enterprise {enterprise}",
                    k.chars().take(64).collect::<String>()
                ),
            ));
        }
        Some(Ok(_)) => {}
    }
    let ahead = record.event_time().timestamp() - now_secs;
    if ahead > cfg.max_future_secs {
        return Err((
            "event_time".into(),
            format!(
                "{} lies {ahead} s ahead of the clock (more than stream.max_future_secs = {}): \
                 a record from the future would close the open days early",
                record.event_time().to_rfc3339(),
                cfg.max_future_secs
            ),
        ));
    }
    Ok(record)
}

/// Numbers the routed micro-batches (unique in the process): the event ids a batch adds to a
/// partition's `seen` carry its number, so a batch redone without a fenced partition takes
/// its own back first.
static ROUTING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Refuses a record whose event id its partition already accepted (in an earlier batch, or
/// earlier in this one) as a repeat (same bytes) or as an id reused with other content;
/// otherwise notes it in the partition's `seen` under batch `batch`.
fn once(
    st: Option<&mut PartitionState>,
    batch: u64,
    record: crate::engine::Record,
    kind: EventKind,
    m: &OwnedMessage,
    payload: &[u8],
) -> std::result::Result<crate::engine::Record, (String, String)> {
    use std::collections::hash_map::Entry;
    use std::hash::BuildHasher as _;
    let Some(st) = st else {
        return Ok(record);
    };
    let digest = FastState::default().hash_one(payload);
    match st.seen.entry(Seen::key(kind, record.event_id())) {
        Entry::Vacant(v) => {
            v.insert(Seen {
                day: biz_date(record.event_time()),
                offset: Some(m.offset()),
                digest: Some(digest),
                batch,
            });
            Ok(record)
        }
        Entry::Occupied(o) => {
            let first = o.get();
            let at = match first.offset {
                Some(off) => format!("offset {off} of partition {}", m.partition()),
                None => format!("the lake (business day {})", first.day),
            };
            let reason = if first.digest == Some(digest) {
                format!("a repeat of the record already accepted at {at}: not counted twice")
            } else {
                format!(
                    "event_id `{}` was already accepted at {at}{}: an id names one record",
                    record.event_id(),
                    if first.digest.is_some() {
                        " with other content"
                    } else {
                        ""
                    }
                )
            };
            Err(("event_id".into(), reason))
        }
    }
}

/// The payload in base64 when it is not UTF-8 (the dead letter keeps the exact bytes).
fn raw_base64(payload: &[u8]) -> Option<String> {
    use base64::Engine as _;
    std::str::from_utf8(payload)
        .is_err()
        .then(|| base64::engine::general_purpose::STANDARD.encode(payload))
}

/// Largest raw payload a dead letter on the topic carries: a longer one is cut there (the
/// envelope says so, with the length and digest; the store keeps it whole), so that the
/// envelope stays well inside the broker's message size limit and is never retried for ever.
pub const DEAD_LETTER_RAW_LIMIT: usize = 64 * 1024;

/// The raw text an envelope carries: the whole of it, or its first
/// [`DEAD_LETTER_RAW_LIMIT`] bytes (at a character boundary).
fn envelope_raw(raw: &str) -> (&str, bool) {
    if raw.len() <= DEAD_LETTER_RAW_LIMIT {
        return (raw, false);
    }
    let mut end = DEAD_LETTER_RAW_LIMIT;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    (&raw[..end], true)
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
    /// The exact bytes, when they are not UTF-8 (`raw` then has U+FFFD in their place).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<&'a str>,
    /// `raw` was cut at [`DEAD_LETTER_RAW_LIMIT`]: the message had `raw_bytes` bytes with
    /// SHA-256 `raw_sha256`; the store's dead-letter table has it whole.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    raw_truncated: bool,
    raw_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_sha256: Option<String>,
    received_at: String,
}

impl Service {
    /// Processes one micro-batch (possibly empty: then only closes days). `decoded` is the
    /// decoding of a prefix of `msgs` (done ahead); the rest is decoded here. A failure the
    /// error classifies as [`ErrorClass::Retry`] (the store busy or locked, the disk full, the
    /// broker away) is retried up to [`BATCH_RETRIES`] times with backoff, the partitions'
    /// state loaded again first; any other stops the service (bad input never reaches here:
    /// it went to the dead letter).
    pub(super) fn process(
        &mut self,
        msgs: Vec<OwnedMessage>,
        mut decoded: Vec<Option<Decoded>>,
    ) -> Result<()> {
        let mut attempt = 0;
        let mut reload = false;
        loop {
            let outcome = if reload { self.reload_states() } else { Ok(()) };
            let outcome = outcome.and_then(|()| {
                reload = false;
                self.decode_rest(&msgs, &mut decoded);
                self.process_once(&msgs, std::mem::take(&mut decoded))
            });
            let fenced = match outcome {
                Ok(None) => return Ok(()),
                Ok(Some(fenced)) => fenced,
                Err(e) if e.class() == ErrorClass::Retry && attempt < BATCH_RETRIES => {
                    // Nothing of the batch is durable: the transaction rolled back. The
                    // partitions' state in memory may hold part of it, so it is loaded again
                    // from the store (which also removes the batch's lake files) before the
                    // batch is judged again; a reload that fails the same way waits too.
                    attempt += 1;
                    self.wait_before_retry(msgs.len(), attempt, &e);
                    reload = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for p in fenced {
                tracing::warn!(
                    partition = p,
                    "partition taken over by another instance (fenced); its commit refused, leaving it"
                );
                self.metrics
                    .fenced
                    .with_label_values(&[p.to_string().as_str()])
                    .inc();
                self.summary.fenced += 1;
                self.states.remove(&p);
                self.assigned.retain(|(_, q)| *q != p);
                self.resume.retain(|(_, q), _| *q != p);
            }
        }
    }

    /// Decodes the messages `decoded` does not cover yet.
    fn decode_rest(&mut self, msgs: &[OwnedMessage], decoded: &mut Vec<Option<Decoded>>) {
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
    }

    /// Logs and counts a retryable failure, then waits its backoff (0.4 s, doubling).
    fn wait_before_retry(&mut self, messages: usize, attempt: u32, e: &StreamError) {
        let wait = Duration::from_millis(200 << attempt.min(5));
        tracing::warn!(
            messages,
            attempt,
            retries = BATCH_RETRIES,
            wait_ms = wait.as_millis() as u64,
            error = %e,
            "batch failed; judging it again after the wait"
        );
        self.metrics
            .batch_retries
            .with_label_values(&[] as &[&str])
            .inc();
        self.summary.retries += 1;
        std::thread::sleep(wait);
    }

    /// Forgets the partitions' state in memory and loads it again from the store.
    fn reload_states(&mut self) -> Result<()> {
        self.states.clear();
        self.apply_rebalances()
    }

    /// One attempt at a micro-batch (`decoded` is the decoding of every message):
    /// `Some(partitions)` when some partitions turned out to be owned by another instance
    /// (nothing was written; redo without them).
    ///
    /// Phases: route the messages to their topic-partitions (skipping what is not this
    /// instance's, replayed or being re-read), book what was consumed, refresh the high
    /// watermarks of partitions whose day may close, then in one store transaction: fence,
    /// write the lake files beside the judging, store dead letters, risk events, counts and
    /// window state, and commit; then the metrics of what is durable, publish, commit offsets.
    fn process_once(
        &mut self,
        msgs: &[OwnedMessage],
        decoded: Vec<Option<Decoded>>,
    ) -> Result<Option<Vec<i32>>> {
        let started = Instant::now();
        let path = self.store.path().to_path_buf();
        let routed = self.route(msgs, decoded)?;
        let mut tally = self.tally(&routed.runs);
        let mut t = spent(self.metrics, &mut self.summary, "decode", started);

        let unknown = self.refresh_highs_before_closing(&routed.accepted, &tally.seen);
        let holding = self.holding_snapshot(&tally.seen, &unknown);
        t = spent(self.metrics, &mut self.summary, "watermarks", t);
        let now = Utc::now();
        faults::point("stream.before_fence");
        let tx = self
            .store
            .conn()
            .transaction_with_behavior(pharmwatch_core::db::TransactionBehavior::Immediate)
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
            // The batch is redone without the fenced partitions: the others give back the
            // event ids it noted, so it does not find its own records there.
            for st in self.states.values_mut() {
                st.seen.retain(|_, s| s.batch != routed.batch);
            }
            return Ok(Some(fenced));
        }
        let judge = Judge {
            engine: &self.engine,
            states: &mut self.states,
            cfg: &self.cfg,
            rt: &self.rt,
            lake: &self.lake,
        };
        let (outcome, phases) =
            judge.write_and_judge(&tx, &path, &routed.accepted, &tally.first_offset, &holding)?;
        faults::point("stream.after_lake_files");
        for (phase, secs) in phases {
            book_phase(self.metrics, &mut self.summary, &phase, secs);
        }
        t = spent(self.metrics, &mut self.summary, "engine", t);
        store_rejected(&mut self.states, &tx, &path, &routed.rejected, now)?;
        let new_events = store_events(&tx, &path, outcome.events, &routed.runs, now)?;
        for ((topic, p), n) in &outcome.late {
            tally.counts.entry((topic.clone(), *p)).or_default()[3] += *n as i64;
        }
        store_counts(&tx, &path, &tally.counts)?;
        for st in self.states.values_mut() {
            st.save(&tx, &path)?;
        }
        let earliest_closed = self
            .states
            .values()
            .map(|st| st.meta.closed_through)
            .min()
            .flatten();
        // The traceability codes no open day can reach are forgotten a slice per batch.
        let slice = self
            .trace_sweeper
            .slice(&self.engine, &tx, &path, earliest_closed)?;
        t = spent(self.metrics, &mut self.summary, "store", t);
        faults::point("stream.in_transaction");
        tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        self.trace_sweeper.committed(slice);
        faults::point("stream.after_commit");
        t = spent(self.metrics, &mut self.summary, "commit", t);
        self.book_consumed(&routed.runs);
        self.book_durable(&tally.counts, &routed.rejected, &new_events);

        // 3. Publish the outbox, 4. commit offsets to Kafka.
        self.publish_outbox()?;
        faults::point("stream.before_offset_commit");
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

    /// Routes the batch's messages to their topic-partitions: what belongs to no event topic,
    /// to a revoked or sought topic-partition, or lies below the store's next offset (a
    /// replay) is left out; the rest is accepted or rejected by its decoding.
    fn route(&mut self, msgs: &[OwnedMessage], decoded: Vec<Option<Decoded>>) -> Result<Routed> {
        let mut routed = Routed {
            accepted: Vec::with_capacity(msgs.len()),
            rejected: Vec::new(),
            runs: Vec::new(),
            batch: ROUTING.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
        };
        let batch = routed.batch;
        let now_secs = Utc::now().timestamp();
        // What the batch holds per topic-partition, found by a short scan (a batch holds a
        // few dozen topic-partitions and their messages come in runs).
        let mut last = usize::MAX;
        let mut decoded = decoded.into_iter();
        for m in msgs {
            let decoded = decoded.next().flatten();
            last = self.run_of(&mut routed.runs, last, m);
            let run = &mut routed.runs[last];
            if run.skip {
                continue;
            }
            if run.resuming && self.resume_or_rewind(run, m)? {
                continue;
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
                partition: m.partition(),
                offset: m.offset(),
            };
            let key = m.key();
            let payload = m.payload().unwrap_or_default();
            let admitted = decoded
                .and_then(|record| admit(record, key, now_secs, &self.cfg))
                .and_then(|record| {
                    let st = self.states.get_mut(&m.partition());
                    once(st, batch, record, kind, m, payload)
                });
            match admitted {
                Ok(record) => {
                    run.counts[1] += 1;
                    if let Some(ts) = m.timestamp().to_millis() {
                        run.timestamps.push((m.offset(), ts));
                    }
                    routed.accepted.push(Accepted { source, record });
                }
                Err((field, reason)) => {
                    run.counts[2] += 1;
                    routed.rejected.push(Rejected {
                        source,
                        kind: kind.as_str().to_string(),
                        key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
                        field,
                        reason,
                        raw: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        raw_base64: raw_base64(m.payload().unwrap_or_default()),
                    });
                }
            }
        }
        Ok(routed)
    }

    /// The index in `runs` of the run of `m`'s topic-partition (`last` is the previous
    /// message's), added when new.
    fn run_of(&self, runs: &mut Vec<TpRun>, last: usize, m: &OwnedMessage) -> usize {
        let (p, topic) = (m.partition(), m.topic());
        if last < runs.len() && runs[last].partition == p && runs[last].topic == topic {
            return last;
        }
        if let Some(i) = runs
            .iter()
            .position(|r| r.partition == p && r.topic == topic)
        {
            return i;
        }
        let tp = (topic.to_string(), p);
        runs.push(TpRun {
            // Revoked while the batch was collected: the new owner reads it. Every message
            // of the batch was polled before any seek made now.
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

    /// The first message of a resuming topic-partition (see [`Resume`]): at or before the
    /// store's offset, the resume is done (a later start means the broker lost messages,
    /// counted as a gap); after it, the consumer is rewound further back and the run skipped
    /// (returns true).
    fn resume_or_rewind(&mut self, run: &mut TpRun, m: &OwnedMessage) -> Result<bool> {
        let (topic, p) = (m.topic(), m.partition());
        let tp = (run.topic.clone(), p);
        if let Some(r) = self.resume.get(&tp).copied() {
            if m.offset() <= r.next || r.from == 0 {
                if m.offset() > r.next {
                    let lost = m.offset() - r.next;
                    tracing::error!(
                        topic,
                        partition = p,
                        from = r.next,
                        to = m.offset(),
                        lost,
                        "offsets are gone from the broker (retention?): messages cannot be read"
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
                    .map_err(|e| kafka_err(format!("seek {topic}[{p}] to {}", back.from), e))?;
                self.resume.insert(tp.clone(), back);
                self.sought.insert(tp);
                run.skip = true;
                return Ok(true);
            }
        }
        run.resuming = false;
        Ok(false)
    }

    /// The batch's counts, first offsets and next offsets per topic-partition.
    fn tally(&self, runs: &[TpRun]) -> Tally {
        let mut tally = Tally::default();
        for run in runs {
            if run
                .kind
                .filter(|_| !run.skip || run.counts[0] > 0)
                .is_none()
            {
                continue;
            }
            let tp = (run.topic.clone(), run.partition);
            tally.seen.insert(tp.clone(), run.next);
            if run.counts[0] > 0 {
                tally.counts.insert(tp.clone(), run.counts);
            }
            if let Some(first) = run.first {
                tally.first_offset.insert(tp, first);
            }
        }
        tally
    }

    /// Books what each topic-partition consumed and replayed, once the batch is durable (a
    /// batch redone after a fence or a retry is counted once).
    fn book_consumed(&mut self, runs: &[TpRun]) {
        for run in runs {
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
            if run.counts[0] > 0 {
                self.metrics
                    .consumed
                    .with_label_values(&[kind.as_str()])
                    .inc_by(run.counts[0] as u64);
            }
        }
    }

    /// A day closes on the statistics' high watermarks, which lag by up to their interval:
    /// before a partition's day may close, ask the broker for fresh ones, so a topic that only
    /// looks read to its end does not let the watermark run ahead of records already on the
    /// broker. Only a topic-partition that looks read to its end can let the watermark pass
    /// the day; one the statistics already show behind holds it anyway. The query goes
    /// through the producer's connection: on the consumer's, it would queue behind a
    /// long-poll fetch (up to `fetch.wait.max.ms` per query). Returns the topic-partitions
    /// whose high watermark could not be known (no broker, or the ask failed): they hold
    /// their days open for this batch.
    fn refresh_highs_before_closing(
        &self,
        accepted: &[Accepted],
        seen: &HashMap<(String, i32), i64>,
    ) -> HashSet<(String, i32)> {
        // An upper bound of each partition's watermark after this batch.
        let mut upper: HashMap<i32, i64> = HashMap::new();
        for (p, st) in &self.states {
            if let Some(m) = st.meta.max_event_ms.values().max() {
                upper.insert(*p, *m);
            }
        }
        for a in accepted {
            let ms = a.record.event_time().timestamp_millis();
            let e = upper.entry(a.source.partition).or_insert(ms);
            *e = (*e).max(ms);
        }
        let now = Instant::now();
        let closing: Vec<i32> = self
            .states
            .iter()
            .filter(|(p, st)| self.engine.would_close(st, upper.get(p).copied(), now))
            .map(|(p, _)| *p)
            .collect();
        let stats_high = self.high_snapshot();
        let mut unknown = HashSet::new();
        // Without a broker there is no high watermark to ask for (each try would wait out its
        // time limit); after one failed ask the broker is taken as away for this batch. Either
        // way the days stay open until it is back.
        let mut unreachable = self.broker_down();
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
                if unreachable {
                    unknown.insert(key);
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
                        tracing::warn!(topic, partition = *tp, error = %e, "high watermark unknown; the day stays open");
                        unreachable = true;
                        unknown.insert(key);
                    }
                }
            }
        }
        unknown
    }

    /// Whether each (kind, partition) holds the watermark for this batch: it has records in
    /// the batch (the statistics may not show them yet: after a quiet spell they lag by up
    /// to their interval), its high watermark is unknown, or the broker holds records of it
    /// not yet read.
    fn holding_snapshot(
        &self,
        seen: &HashMap<(String, i32), i64>,
        unknown: &HashSet<(String, i32)>,
    ) -> HashMap<(EventKind, i32), bool> {
        let high = self.high_snapshot();
        let mut m = HashMap::new();
        for p in self.states.keys() {
            for k in EventKind::ALL {
                let key = (self.cfg.topic(*k), *p);
                let next = self.next_offset(&key.0, *p);
                let in_batch = seen.get(&key).is_some_and(|after| *after > next);
                let unread = high.get(&key).is_none_or(|h| next < *h);
                m.insert((*k, *p), in_batch || unknown.contains(&key) || unread);
            }
        }
        m
    }

    /// The metrics and summary of what the committed transaction made durable.
    fn book_durable(
        &mut self,
        counts: &HashMap<(String, i32), [i64; 4]>,
        rejected: &[Rejected],
        new_events: &[RiskEvent],
    ) {
        for r in rejected {
            self.metrics
                .rejected
                .with_label_values(&[
                    r.kind.as_str(),
                    crate::metrics::field_label(&r.kind, &r.field),
                ])
                .inc();
        }
        for ((topic, _), c) in counts {
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
        for ev in new_events {
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
    }
}

/// What the judging of a batch borrows from the service while its transaction is open.
struct Judge<'a> {
    engine: &'a Engine,
    states: &'a mut HashMap<i32, PartitionState>,
    cfg: &'a StreamConfig,
    rt: &'a tokio::runtime::Handle,
    lake: &'a LakeSource,
}

impl Judge<'_> {
    /// Step 1 beside the judging: the lake files are written whole while the transaction holds
    /// the store's write lock (no other instance can take a partition over in between). Two
    /// threads: this one judges the batch record by record through the transaction, while a
    /// second converts it to Arrow once per lake file, computes the window deltas with
    /// DataFusion over those batches and writes the Parquet files. The engine takes the deltas
    /// once its record rules are done; the caller commits after both threads are done (a
    /// failed write rolls the batch back; its files are removed at the next start).
    fn write_and_judge(
        self,
        tx: &pharmwatch_core::db::Transaction<'_>,
        path: &Path,
        accepted: &[Accepted],
        first_offset: &HashMap<(String, i32), i64>,
        holding: &HashMap<(EventKind, i32), bool>,
    ) -> Result<(Outcome, Vec<(String, f64)>)> {
        let mut by_file: BTreeMap<(EventKind, i32, NaiveDate), Vec<&Accepted>> = BTreeMap::new();
        for a in accepted {
            by_file
                .entry((
                    a.record.kind(),
                    a.source.partition,
                    biz_date(a.record.event_time()),
                ))
                .or_default()
                .push(a);
        }
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
        let lake = self.lake.clone();
        let rt = self.rt.clone();
        let states = self.states;
        let (outcome, written) = std::thread::scope(|s| {
            let (deltas_tx, deltas_rx) = std::sync::mpsc::channel::<Result<Vec<Delta>>>();
            let worker = s.spawn(move || write_lake(&named, &lake, &rt, deltas_tx));
            let outcome = self.engine.process(
                tx,
                path,
                states,
                accepted,
                || {
                    deltas_rx.recv().unwrap_or_else(|_| {
                        Err(CoreError::Internal(
                            "the lake thread ended without window deltas".into(),
                        )
                        .into())
                    })
                },
                &|k, p| holding.get(&(k, p)).copied().unwrap_or(true),
            );
            match worker.join() {
                Ok(w) => (outcome, w),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let beside = written?;
        let mut outcome = outcome?;
        let mut phases: Vec<(String, f64)> =
            beside.iter().map(|(p, s)| ((*p).to_string(), *s)).collect();
        for (step, secs) in std::mem::take(&mut outcome.steps) {
            phases.push((format!("engine_{step}"), secs));
        }
        Ok((outcome, phases))
    }
}

/// Adds `secs` to `phase` (metrics and run summary).
fn book_phase(metrics: &StreamMetrics, summary: &mut RunSummary, phase: &str, secs: f64) {
    metrics
        .phase_seconds
        .with_label_values(&[phase])
        .inc_by(secs);
    *summary.phase_seconds.entry(phase.into()).or_default() += secs;
}

/// The rejected messages into the dead-letter table and the outbox (each once), their
/// offsets advanced in the partition state.
fn store_rejected(
    states: &mut HashMap<i32, PartitionState>,
    tx: &pharmwatch_core::db::Transaction<'_>,
    path: &Path,
    rejected: &[Rejected],
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    for r in rejected {
        let st = states.get_mut(&r.source.partition).ok_or_else(|| {
            CoreError::Internal(format!("no state for partition {}", r.source.partition))
        })?;
        let next = st.offsets.entry(r.source.topic.clone()).or_insert(0);
        *next = (*next).max(r.source.offset + 1);
        let (raw, raw_truncated) = envelope_raw(&r.raw);
        let env = DeadLetterEnvelope {
            source_topic: &r.source.topic,
            partition: r.source.partition,
            offset: r.source.offset,
            key: r.key.as_deref().map(|k| envelope_raw(k).0),
            kind: &r.kind,
            field: &r.field,
            reason: &r.reason,
            raw,
            raw_base64: r
                .raw_base64
                .as_deref()
                .filter(|b| b.len() <= DEAD_LETTER_RAW_LIMIT),
            raw_truncated,
            raw_bytes: r.raw.len(),
            raw_sha256: raw_truncated.then(|| {
                let d = ring::digest::digest(&ring::digest::SHA256, r.raw.as_bytes());
                d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
            }),
            received_at: now.to_rfc3339(),
        };
        let payload =
            serde_json::to_string(&env).map_err(|e| CoreError::Internal(e.to_string()))?;
        let new = tx
            .execute(
                "INSERT INTO dead_letters (source_topic, source_partition, source_offset,
                     kind, field, reason, raw, received_at, raw_base64)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT DO NOTHING",
                params![
                    r.source.topic,
                    r.source.partition,
                    r.source.offset,
                    r.kind,
                    r.field,
                    r.reason,
                    r.raw,
                    now.to_rfc3339(),
                    r.raw_base64
                ],
            )
            .map_err(|e| sql_err(path, "insert dead letter", e))?;
        if new > 0 {
            tx.execute(
                "INSERT INTO outbox (topic_role, message_key, payload, created_at) VALUES ('dead_letter', ?1, ?2, ?3)",
                params![format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset), payload, now.to_rfc3339()],
            )
            .map_err(|e| sql_err(path, "outbox", e))?;
        }
    }
    Ok(())
}

/// How many times a batch is retried after a transient failure before the service stops.
pub(super) const BATCH_RETRIES: u32 = 5;

/// A routed micro-batch: the accepted and rejected messages and each topic-partition's run.
struct Routed {
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
    runs: Vec<TpRun>,
    /// Its number (see [`ROUTING`]): the event ids it noted in the partitions' `seen`.
    batch: u64,
}

/// What a batch consumed per topic-partition.
#[derive(Default)]
struct Tally {
    /// Consumed, accepted, rejected, late.
    counts: HashMap<(String, i32), [i64; 4]>,
    /// The first offset of the batch (names its lake files).
    first_offset: HashMap<(String, i32), i64>,
    /// The next offset after the batch.
    seen: HashMap<(String, i32), i64>,
}

/// One lake file of a batch: (kind, partition, business day), its records, and the batch's
/// first offset of that topic-partition (which names the file).
type LakeFile<'a> = ((EventKind, i32, NaiveDate), &'a Vec<&'a Accepted>, i64);

/// The lake thread of [`Judge::write_and_judge`]: converts each lake file's records to
/// Arrow, sends the window deltas computed over them, writes the Parquet files; returns the
/// seconds of each step.
fn write_lake(
    named: &[LakeFile<'_>],
    lake_dir: &LakeSource,
    rt: &tokio::runtime::Handle,
    deltas_tx: std::sync::mpsc::Sender<Result<Vec<Delta>>>,
) -> Result<[(&'static str, f64); 3]> {
    let started = Instant::now();
    let mut lake: HashMap<EventKind, Vec<RecordBatch>> = HashMap::new();
    let mut files: Vec<(String, EventKind, RecordBatch)> = Vec::new();
    let mut convert = || -> Result<()> {
        for ((kind, p, day), recs, first) in named {
            let b = crate::engine::lake_batch(*kind, recs)?;
            let file = format!(
                "{}/date={}/stream-p{p:03}-o{first:012}.parquet",
                kind.as_str(),
                day.format("%Y-%m-%d")
            );
            files.push((file, *kind, b.clone()));
            lake.entry(*kind).or_default().push(b);
        }
        Ok(())
    };
    let converted = convert();
    let convert_secs = started.elapsed().as_secs_f64();
    match converted {
        Ok(()) => {
            let _ = deltas_tx.send(rt.block_on(window_deltas(&lake)));
        }
        Err(e) => {
            let _ = deltas_tx.send(Err(CoreError::Internal(format!(
                "lake conversion failed: {e}"
            ))
            .into()));
            return Err(e);
        }
    }
    drop(deltas_tx);
    let deltas_secs = started.elapsed().as_secs_f64() - convert_secs;
    let writing = Instant::now();
    for (file, kind, b) in &files {
        rt.block_on(lake_dir.write_file(file, kind.lake_schema(), std::slice::from_ref(b)))?;
    }
    Ok([
        ("lake", convert_secs),
        ("engine_deltas", deltas_secs),
        ("lake_write", writing.elapsed().as_secs_f64()),
    ])
}

/// The engine's risk events into the store and the outbox (each once); returns the new ones,
/// each with the producer timestamp of its message (for the detection latency).
fn store_events(
    tx: &pharmwatch_core::db::Transaction<'_>,
    path: &Path,
    events: Vec<RiskEvent>,
    runs: &[TpRun],
    now: chrono::DateTime<Utc>,
) -> Result<Vec<RiskEvent>> {
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
    // Each event once: the batch's events go up together, those already on record (a batch
    // judged again after a crash) are skipped, and only the new ones enter the outbox.
    let mut seen = HashSet::new();
    let mut events: Vec<RiskEvent> = events
        .into_iter()
        .filter(|ev| seen.insert(ev.id.clone()))
        .collect();
    let mut cols: [Vec<Value>; 13] = Default::default();
    for ev in &mut events {
        ev.source_timestamp_ms = timestamp_of(&ev.source);
        let item =
            serde_json::to_string(&ev.item).map_err(|e| CoreError::Internal(e.to_string()))?;
        for (col, v) in cols.iter_mut().zip([
            Value::Text(ev.id.clone()),
            Value::Text(ev.indicator.clone()),
            Value::Text(ev.enterprise_id.clone()),
            ev.product_id.clone().map_or(Value::Null, Value::Text),
            Value::Text(ev.biz_date.to_string()),
            Value::Text(ev.event_time.to_rfc3339()),
            Value::Text(ev.detected_at.to_rfc3339()),
            Value::Text(ev.source.topic.clone()),
            Value::Integer(i64::from(ev.source.partition)),
            Value::Integer(ev.source.offset),
            Value::Real(ev.score),
            Value::Text(ev.grade.clone()),
            Value::Text(item),
        ]) {
            col.push(v);
        }
    }
    let names = [
        "id",
        "indicator",
        "enterprise_id",
        "product_id",
        "biz_date",
        "event_time",
        "detected_at",
        "source_topic",
        "source_partition",
        "source_offset",
        "score",
        "grade",
        "item_json",
    ];
    let columns: Vec<pharmwatch_core::db::Column<'_>> = names.into_iter().zip(cols).collect();
    let inserted = tx
        .insert_new("risk_events", &columns)
        .map_err(|e| sql_err(path, "insert risk event", e))?;
    let new_events: Vec<RiskEvent> = events
        .into_iter()
        .zip(inserted)
        .filter_map(|(ev, new)| new.then_some(ev))
        .collect();
    let mut outbox: [Vec<Value>; 4] = Default::default();
    for ev in &new_events {
        let payload = serde_json::to_string(ev).map_err(|e| CoreError::Internal(e.to_string()))?;
        outbox[0].push(Value::Text("risk_event".into()));
        outbox[1].push(Value::Text(ev.id.clone()));
        outbox[2].push(Value::Text(payload));
        outbox[3].push(Value::Text(now.to_rfc3339()));
    }
    let [role, key, payload, created] = outbox;
    tx.insert_rows(
        "outbox",
        &[
            ("topic_role", role),
            ("message_key", key),
            ("payload", payload),
            ("created_at", created),
        ],
        "",
    )
    .map_err(|e| sql_err(path, "outbox", e))?;
    Ok(new_events)
}

/// Adds the batch's counts per topic-partition to the store's running totals.
fn store_counts(
    tx: &pharmwatch_core::db::Transaction<'_>,
    path: &Path,
    counts: &HashMap<(String, i32), [i64; 4]>,
) -> Result<()> {
    for ((topic, p), c) in counts {
        tx.execute(
            "INSERT INTO stream_counts (topic, partition, consumed, accepted, rejected, late)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (topic, partition) DO UPDATE SET
                 consumed = stream_counts.consumed + excluded.consumed,
                 accepted = stream_counts.accepted + excluded.accepted,
                 rejected = stream_counts.rejected + excluded.rejected,
                 late = stream_counts.late + excluded.late",
            params![topic, p, c[0], c[1], c[2], c[3]],
        )
        .map_err(|e| sql_err(path, "counts", e))?;
    }
    Ok(())
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
