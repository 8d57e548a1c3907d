//! The consumer service behind `pharmwatch stream`: joins the consumer group, polls
//! micro-batches (bounded by size and time), decodes and validates every message, lands
//! accepted records in the lake, judges them with the [`Engine`], and commits.
//!
//! Modules: `consumer` (the Kafka clients and start-up checks), `batch` (one micro-batch:
//! decode, route, judge, store), `publish` (the outbox), `offsets` (where each
//! topic-partition stands, resuming and rewinding), `startup` (seeding from the baseline),
//! `http` (`/metrics`, `/healthz`).
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

use pharmwatch_core::remote_lake::LakeSource;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use serde::Serialize;

use crate::error::Result;
use pharmwatch_core::baseline::Baseline;
use pharmwatch_core::ingest::ReferenceSets;
use pharmwatch_core::store::Store;
use pharmwatch_schemas::EventKind;

use crate::config::StreamConfig;
use crate::engine::{Engine, PartitionState, Reference, TraceSweeper};
use crate::metrics::{self, StreamMetrics};

mod batch;
mod consumer;
mod http;
mod offsets;
mod publish;
mod startup;

use batch::Pending;
use consumer::Ctx;
use http::Health;
use offsets::Resume;

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
    /// Micro-batches judged again after a retryable failure (a busy store, a broker away).
    pub retries: u64,
    /// Partitions whose commit was refused because another instance had taken them over.
    pub fenced: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Seconds from the first message received to the end of the last batch (throughput is
    /// `consumed / active_seconds`).
    pub active_seconds: f64,
    /// Seconds per stage of the consume loop (as `pharmwatch_stream_phase_seconds_total`).
    pub phase_seconds: BTreeMap<String, f64>,
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
    /// The lake the batches land in (a folder or a bucket).
    lake: LakeSource,
    assigned_at: Instant,
    resume: HashMap<(String, i32), Resume>,
    /// Topic-partitions sought since the pending messages were last cleaned: what was
    /// polled for them before the seek is stale (see [`Pending::drop_sought`]).
    sought: HashSet<(String, i32)>,
    /// Forgets the traceability codes no open day can reach, a slice per batch.
    trace_sweeper: TraceSweeper,
}

/// Runs the service until `shutdown` is set (finishing the batch in hand), or until idle when
/// [`RunOptions::exit_when_idle`] is set.
pub async fn run(
    cfg: StreamConfig,
    opts: RunOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary> {
    let started = Instant::now();
    let (mut svc, http) = start(cfg).await?;
    let health = svc.health.clone();
    let result = tokio::task::block_in_place(|| consume(&mut svc, &opts, &shutdown));
    if let Ok(mut h) = health.lock() {
        h.status = if result.is_ok() { "stopping" } else { "failed" };
    }
    result?;
    svc.consumer.unsubscribe();
    http.abort();
    svc.summary.seconds = started.elapsed().as_secs_f64();
    Ok(svc.summary)
}

/// Start-up: the reference tables and the baseline, the store (its trace codes seeded from
/// the baseline), the Kafka clients (failing fast when the broker or a topic is missing), the
/// subscription and the HTTP side.
async fn start(cfg: StreamConfig) -> Result<(Service, tokio::task::JoinHandle<()>)> {
    let lake = LakeSource::at(&cfg.lake)?;
    let reference = Reference::load(&cfg.lake).await?;
    let baseline = match &cfg.baseline {
        Some(dir) => Baseline::load(dir).await?,
        None => Baseline::default(),
    };
    let mut store = Store::open_stream(&cfg.store)?;
    store.set_busy_timeout(Duration::from_millis(cfg.store_busy_timeout_ms))?;
    startup::seed_trace_codes(&mut store, &baseline).await?;
    let consumer = consumer::consumer(&cfg)?;
    let producer = consumer::producer(&cfg)?;
    consumer::check_topics(&consumer, &cfg)?;
    let topics: Vec<String> = EventKind::ALL.iter().map(|k| cfg.topic(*k)).collect();
    let refs: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    consumer
        .subscribe(&refs)
        .map_err(|e| consumer::kafka_err(format!("subscribe to {}", topics.join(", ")), e))?;
    let health = Arc::new(Mutex::new(Health {
        status: "ok",
        last_poll_unix: Utc::now().timestamp(),
        broker: "unknown",
        ..Health::default()
    }));
    let metrics = metrics::stream();
    let http = http::serve_http(
        cfg.metrics_listen.clone(),
        health.clone(),
        cfg.store.clone(),
    )
    .await?;
    tracing::info!(
        group = %cfg.group_id,
        brokers = %cfg.brokers,
        metrics = %format!("http://{}/metrics", cfg.metrics_listen),
        lake = %lake.describe(),
        store = %pharmwatch_core::db::display_location(&cfg.store),
        "stream started"
    );
    let engine = Engine {
        reference,
        baseline,
        lateness_ms: cfg.allowed_lateness_secs * 1000,
        close_grace: Duration::from_millis(cfg.close_grace_ms),
        thresholds: cfg.thresholds.clone(),
    };
    let svc = Service {
        cfg,
        engine,
        store,
        consumer,
        producer,
        metrics,
        health,
        assigned: HashSet::new(),
        states: HashMap::new(),
        summary: RunSummary::default(),
        rt: tokio::runtime::Handle::current(),
        lake,
        assigned_at: Instant::now(),
        resume: HashMap::new(),
        sought: HashSet::new(),
        trace_sweeper: TraceSweeper::default(),
    };
    Ok((svc, http))
}

/// The consuming loop: poll a micro-batch, apply rebalances and rewinds, judge the batch (with
/// the next one decoded beside it under a backlog), or close days when nothing arrives; ends
/// on `shutdown` or, with `exit_when_idle`, once everything assigned is read.
fn consume(svc: &mut Service, opts: &RunOptions, shutdown: &AtomicBool) -> Result<()> {
    // Decoding the next batch beside the current one needs the topic names and reference
    // sets while the service is borrowed for judging: its own copies.
    let decode_cfg = svc.cfg.clone();
    let decode_sets = svc.engine.reference.sets.clone();
    svc.publish_outbox()?;
    let mut clock = LoopClock::new();
    let mut pending = Pending::default();
    while !shutdown.load(Ordering::SeqCst) {
        svc.poll_into(&mut pending, shutdown, &mut clock.first_message);
        clock.watch_progress(svc);
        svc.watch_broker();
        if let Ok(mut h) = svc.health.lock() {
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
            && pending.msgs.len() < svc.cfg.batch_max_records
        {
            continue;
        }
        if !pending.msgs.is_empty() {
            pending = svc.judge_and_decode_ahead(
                std::mem::take(&mut pending),
                &decode_cfg,
                &decode_sets,
            )?;
            clock.last_message = Instant::now();
            if let Some(f) = clock.first_message {
                svc.summary.active_seconds = (clock.last_message - f).as_secs_f64();
            }
        } else if clock.last_idle_pass.elapsed() >= Duration::from_millis(500)
            && !svc.states.is_empty()
        {
            // Nothing arrived: days may still close as topics are read to their end.
            clock.last_idle_pass = Instant::now();
            svc.process(Vec::new(), Vec::new())?;
            if let Some(idle) = opts.exit_when_idle
                && clock.last_message.elapsed() >= idle
                && svc.all_read()
                && svc.engine.settled(&svc.states, Instant::now())
            {
                break;
            }
        }
    }
    svc.commit_offsets();
    Ok(())
}

/// The clocks of the consuming loop.
struct LoopClock {
    last_message: Instant,
    last_idle_pass: Instant,
    /// When the first message was in hand (the sustained rate's clock starts there, as a bare
    /// consumer's does).
    first_message: Option<Instant>,
    /// Messages consumed at the last progress, and when.
    progress: (u64, Instant),
}

impl LoopClock {
    fn new() -> Self {
        Self {
            last_message: Instant::now(),
            last_idle_pass: Instant::now(),
            first_message: None,
            progress: (0, Instant::now()),
        }
    }

    /// Logs where the partitions stand when nothing was consumed for 30 s.
    fn watch_progress(&mut self, svc: &Service) {
        if svc.summary.consumed != self.progress.0 {
            self.progress = (svc.summary.consumed, Instant::now());
        } else if self.progress.1.elapsed() >= Duration::from_secs(30) {
            svc.log_stall();
            self.progress.1 = Instant::now();
        }
    }
}

impl Service {
    /// Notes in the health whether a broker is connected, logging each change: while none is,
    /// the loop goes on polling (librdkafka reconnects by itself), batches that need the broker
    /// (publishing, offset commits) leave their work in the store for later, and `/healthz`
    /// answers 503.
    fn watch_broker(&self) {
        let now = match self.broker_up() {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        };
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        if h.broker != now {
            match now {
                "down" => tracing::warn!(
                    brokers = %self.cfg.brokers,
                    "no broker connected: waiting and reconnecting; /healthz answers 503"
                ),
                "up" if h.broker == "down" => tracing::info!("the broker is back"),
                _ => {}
            }
            h.broker = now;
        }
    }

    /// Whether a broker of the cluster was connected at librdkafka's last statistics (`None`
    /// before the first).
    fn broker_up(&self) -> Option<bool> {
        self.consumer
            .context()
            .broker_up
            .lock()
            .ok()
            .and_then(|b| *b)
    }

    /// Whether no broker of the cluster is connected (known from the statistics).
    pub(super) fn broker_down(&self) -> bool {
        self.broker_up() == Some(false)
    }

    /// Polls into `pending` until it holds a full batch or the batch's wait is over. Once the
    /// batch has a message it takes only what has already arrived: a batch closes when the
    /// consumer's queue runs dry (small batches at a low rate, full ones under a backlog), so
    /// no record waits for the time bound.
    fn poll_into(
        &mut self,
        pending: &mut Pending,
        shutdown: &AtomicBool,
        first_message: &mut Option<Instant>,
    ) {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.batch_max_wait_ms);
        let poll_started = Instant::now();
        while pending.msgs.len() < self.cfg.batch_max_records {
            let mut left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !pending.msgs.is_empty() {
                left = left.min(Duration::from_millis(2));
            }
            match self.consumer.poll(left) {
                Some(Ok(m)) => {
                    first_message.get_or_insert_with(Instant::now);
                    pending.msgs.push(m.detach());
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
        }
        batch::spent(self.metrics, &mut self.summary, "poll", poll_started);
    }

    /// Judges `current`. Under a backlog the next batch has already arrived: it is taken now
    /// (without waiting) and decoded on a second thread while this one is judged; at a low
    /// rate there is nothing yet and the next batch is polled as usual. Returns the next
    /// batch (what was polled ahead, with its decoding).
    fn judge_and_decode_ahead(
        &mut self,
        current: Pending,
        decode_cfg: &StreamConfig,
        decode_sets: &ReferenceSets,
    ) -> Result<Pending> {
        let ahead_started = Instant::now();
        let mut ahead = Pending::default();
        while ahead.msgs.len() < self.cfg.batch_max_records {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => ahead.msgs.push(m.detach()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            }
        }
        batch::spent(self.metrics, &mut self.summary, "poll", ahead_started);
        // That poll may have served a rebalance: apply it before judging.
        self.apply_rebalances()?;
        let (judged, decoded_ahead) = std::thread::scope(|s| {
            let decoding = (!ahead.msgs.is_empty()).then(|| {
                s.spawn(|| {
                    let t = Instant::now();
                    let d = batch::decode_all(decode_cfg, decode_sets, &ahead.msgs, false);
                    (d, t.elapsed().as_secs_f64())
                })
            });
            let judged = self.process(current.msgs, current.decoded);
            let decoded = decoding.map(|h| match h.join() {
                Ok(d) => d,
                Err(panic) => std::panic::resume_unwind(panic),
            });
            (judged, decoded)
        });
        judged?;
        if let Some((decoded, secs)) = decoded_ahead {
            self.metrics
                .phase_seconds
                .with_label_values(&["decode_ahead"])
                .inc_by(secs);
            *self
                .summary
                .phase_seconds
                .entry("decode_ahead".into())
                .or_default() += secs;
            ahead.decoded = decoded;
        }
        ahead.drop_sought(&self.sought);
        self.sought.clear();
        Ok(ahead)
    }
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
    let admin: AdminClient<DefaultClientContext> = consumer::client_config(cfg)
        .create()
        .map_err(|e| consumer::kafka_err(format!("admin client for {}", cfg.brokers), e))?;
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
        .map_err(|e| consumer::kafka_err(format!("create topics on {}", cfg.brokers), e))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => {
                return Err(consumer::kafka_err(
                    format!("create topic {t}"),
                    rdkafka::error::KafkaError::AdminOp(e),
                ));
            }
        }
    }
    Ok(created)
}
