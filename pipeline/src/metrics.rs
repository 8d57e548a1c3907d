//! Every Prometheus metric pharmwatch exposes, defined in one place. Names carry the
//! `pharmwatch_` prefix; labels are bounded (event kind, field, indicator, grade, region,
//! enterprise type, segment, document kind, channel, outcome, partition number) and never an
//! enterprise id.
//!
//! Three sets, one registry each:
//! - [`StreamMetrics`] (`pharmwatch stream`): records consumed / accepted / rejected / late by
//!   kind, real-time risk events, batch latency, consumer lag;
//! - [`DeliveryMetrics`] (the delivery worker, which runs inside `stream`): attempts and
//!   outcomes by channel;
//! - [`NightlyMetrics`] (`pharmwatch nightly`, which exits): the run's status, duration and
//!   freshness, the day's risk list by grade, region, enterprise type and indicator, the model's
//!   training facts and score distribution, notices and cases from the ledger. The job writes
//!   them to a file for node_exporter's textfile collector ([`write_textfile`]).
//!
//! Invariants: bounded label sets are initialised at zero when a set is created (every kind,
//! channel × outcome, indicator × grade …), so a dashboard panel has a series before the first
//! event; [`defined`] lists every family, which the dashboard test checks queries against.

use std::path::Path;
use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::error::{PipelineError, Result};

/// Delivery channels (the `channel` label).
pub const CHANNELS: &[&str] = &["webhook", "dingtalk", "wecom", "email", "manual"];
/// Outcomes of a delivery attempt (the `outcome` label).
pub const OUTCOMES: &[&str] = &["success", "retry", "final_failure"];
/// Risk grades, most severe first (the `grade` label).
pub const GRADES: &[&str] = &["D", "C", "B", "A"];
/// Document kinds the ledger issues (the `kind` label of notices).
pub const DOCUMENT_KINDS: &[&str] = &[
    "caution_notice",
    "interview_notice",
    "suspension_decision",
    "lifting_notice",
];

/// The type of a metric family, as the exposition format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    /// A counter (`_total`).
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

/// A metric family pharmwatch defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: FamilyType,
    /// Its labels.
    pub labels: Vec<String>,
}

impl Family {
    /// The series names a query may use: the name, and for a histogram its `_bucket`, `_sum`
    /// and `_count` series.
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            FamilyType::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", self.name))
                .chain([self.name.clone()])
                .collect(),
            _ => vec![self.name.clone()],
        }
    }
}

/// Registers collectors in one registry and remembers their families.
struct Builder {
    registry: Registry,
    families: Vec<Family>,
}

impl Builder {
    fn new() -> Self {
        Self {
            registry: Registry::new(),
            families: Vec::new(),
        }
    }

    fn add<C: Collector + Clone + 'static>(&mut self, c: C, kind: FamilyType) -> C {
        for d in c.desc() {
            self.families.push(Family {
                name: d.fq_name.clone(),
                kind,
                labels: d.variable_labels.clone(),
            });
        }
        must(self.registry.register(Box::new(c.clone())));
        c
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = must(IntCounterVec::new(Opts::new(name, help), labels));
        self.add(c, FamilyType::Counter)
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = must(IntGaugeVec::new(Opts::new(name, help), labels));
        self.add(g, FamilyType::Gauge)
    }

    fn float_gauge(&mut self, name: &str, help: &str) -> Gauge {
        let g = must(Gauge::new(name, help));
        self.add(g, FamilyType::Gauge)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let h = must(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        ));
        self.add(h, FamilyType::Histogram)
    }
}

/// The text exposition format of several registries (e.g. `/metrics` of the stream service,
/// which serves the stream and the delivery metrics).
pub fn render(registries: &[&Registry]) -> String {
    let mut families = Vec::new();
    for r in registries {
        families.extend(r.gather());
    }
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        return format!("# encoding failed: {e}\n");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Every metric family pharmwatch defines (stream, delivery and nightly sets).
pub fn defined() -> Vec<Family> {
    let mut v = StreamMetrics::new().families;
    v.extend(DeliveryMetrics::new().families);
    v.extend(NightlyMetrics::new().families);
    v
}

/// The stream service's metrics.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Messages consumed, by event kind.
    pub consumed: IntCounterVec,
    /// Records accepted, by event kind.
    pub accepted: IntCounterVec,
    /// Messages rejected to the dead letter, by event kind and field.
    pub rejected: IntCounterVec,
    /// Accepted records later than the allowed lateness, by event kind.
    pub late: IntCounterVec,
    /// Messages skipped because the store had already applied them (a replay), by kind.
    pub replayed: IntCounterVec,
    /// New risk events, by indicator.
    pub risk_events: IntCounterVec,
    /// Messages the broker no longer holds when a partition resumes (deleted by retention
    /// before they were processed), by partition.
    pub gap: IntCounterVec,
    /// Micro-batch processing time (decode to offset commit), seconds.
    pub batch_seconds: HistogramVec,
    /// Messages per micro-batch.
    pub batch_records: HistogramVec,
    /// Event time → risk event detection latency, seconds.
    pub detection_seconds: HistogramVec,
    /// Consumer lag (messages behind the high watermark), by event kind and partition.
    pub consumer_lag: IntGaugeVec,
    /// Partitions currently assigned to this instance.
    pub assigned_partitions: IntGauge,
    /// Watermark per partition (epoch seconds of event time).
    pub watermark: GaugeVec,
    /// Messages waiting in the outbox to be published.
    pub outbox_pending: IntGauge,
    /// Time spent per stage of the consume loop, seconds: where a slow batch spends its time.
    /// On the consuming thread: poll, decode (itself on two threads for a large batch),
    /// watermarks, engine (steps engine_rules, engine_windows, engine_close), store, commit,
    /// publish. Beside the engine, on a second thread: lake (records to Arrow),
    /// engine_deltas (the DataFusion window deltas), lake_write (Parquet files).
    pub phase_seconds: CounterVec,
    /// The families above (for [`defined`]).
    pub families: Vec<Family>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Metric definitions are constants: a failure is a programming error caught by tests.
        Err(e) => panic!("metric definition: {e}"),
    }
}

/// The stages of the stream's consume loop (the `phase` label).
pub const PHASES: &[&str] = &[
    "poll",
    "decode",
    "watermarks",
    "engine",
    "engine_rules",
    "engine_windows",
    "engine_close",
    "store",
    "commit",
    "publish",
    "lake",
    "engine_deltas",
    "lake_write",
    "decode_ahead",
];

impl StreamMetrics {
    /// Creates and registers every stream metric, its bounded label sets at zero.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let consumed = b.counter(
            "pharmwatch_stream_consumed_total",
            "Messages consumed from the event topics (each offset once).",
            &["kind"],
        );
        let accepted = b.counter(
            "pharmwatch_stream_accepted_total",
            "Records accepted and landed in the lake.",
            &["kind"],
        );
        let rejected = b.counter(
            "pharmwatch_stream_rejected_total",
            "Messages rejected to the dead-letter topic, by the offending field.",
            &["kind", "field"],
        );
        let late = b.counter(
            "pharmwatch_stream_late_total",
            "Accepted records older than the watermark minus the allowed lateness.",
            &["kind"],
        );
        let replayed = b.counter(
            "pharmwatch_stream_replayed_total",
            "Messages skipped because the store already held their effect (redelivery after a crash or rebalance).",
            &["kind"],
        );
        let risk_events = b.counter(
            "pharmwatch_stream_risk_events_total",
            "New real-time risk events, by indicator.",
            &["indicator"],
        );
        let gap = b.counter(
            "pharmwatch_stream_gap_messages_total",
            "Messages gone from the broker when a partition resumed from the store's offset (retention), never processed.",
            &["partition"],
        );
        let batch_seconds = b.histogram(
            "pharmwatch_stream_batch_seconds",
            "Micro-batch processing time, from decoding to the offset commit.",
            &[],
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let batch_records = b.histogram(
            "pharmwatch_stream_batch_records",
            "Messages per micro-batch.",
            &[],
            vec![1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 20000.0, 50000.0],
        );
        let detection_seconds = b.histogram(
            "pharmwatch_stream_detection_seconds",
            "Wall-clock time from a triggering record's event time to its risk event (live traffic only).",
            &[],
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
        );
        let consumer_lag = b.gauge(
            "pharmwatch_stream_consumer_lag",
            "Messages between this consumer's position and the partition's high watermark.",
            &["kind", "partition"],
        );
        let assigned_partitions = b.add(
            must(IntGauge::new(
                "pharmwatch_stream_assigned_partitions",
                "Partition numbers currently assigned to this instance.",
            )),
            FamilyType::Gauge,
        );
        let watermark = b.add(
            must(GaugeVec::new(
                Opts::new(
                    "pharmwatch_stream_watermark_seconds",
                    "Event-time watermark per partition, Unix seconds.",
                ),
                &["partition"],
            )),
            FamilyType::Gauge,
        );
        let outbox_pending = b.add(
            must(IntGauge::new(
                "pharmwatch_stream_outbox_pending",
                "Risk events and dead letters stored but not yet published to Kafka.",
            )),
            FamilyType::Gauge,
        );
        let phase_seconds = b.add(
            must(CounterVec::new(
                Opts::new(
                    "pharmwatch_stream_phase_seconds_total",
                    "Seconds spent per stage of the consume loop: poll, decode, watermarks, engine (engine_rules, engine_windows, engine_close), store, commit, publish; beside the engine on a second thread: lake, engine_deltas, lake_write.",
                ),
                &["phase"],
            )),
            FamilyType::Counter,
        );
        // Bounded label sets at zero: rates and sums have series before the first event.
        for k in pharmwatch_schemas::EventKind::ALL {
            for c in [&consumed, &accepted, &late, &replayed] {
                c.with_label_values(&[k.as_str()]);
            }
            // A reject names a field of the contract, or `-` for the message as a whole.
            rejected.with_label_values(&[k.as_str(), "-"]);
            for f in k.fields() {
                rejected.with_label_values(&[k.as_str(), f.name]);
            }
        }
        for i in crate::indicators::INDICATORS {
            risk_events.with_label_values(&[*i]);
        }
        for p in PHASES {
            phase_seconds.with_label_values(&[*p]);
        }
        for h in [&batch_seconds, &batch_records, &detection_seconds] {
            h.with_label_values(&[] as &[&str]);
        }
        Self {
            registry: b.registry,
            consumed,
            accepted,
            rejected,
            late,
            replayed,
            risk_events,
            gap,
            batch_seconds,
            batch_records,
            detection_seconds,
            consumer_lag,
            assigned_partitions,
            watermark,
            outbox_pending,
            phase_seconds,
            families: b.families,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }
}

impl Default for StreamMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide stream metrics.
pub fn stream() -> &'static StreamMetrics {
    static M: OnceLock<StreamMetrics> = OnceLock::new();
    M.get_or_init(StreamMetrics::new)
}

/// The delivery worker's metrics (`pharmwatch deliver`, and the worker inside `stream` and
/// `serve`). Labels: `channel` is one of [`CHANNELS`]; `outcome` of an attempt is one of
/// [`OUTCOMES`]; `kind` is a document kind ([`DOCUMENT_KINDS`]).
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Send attempts, by channel and outcome.
    pub attempts: IntCounterVec,
    /// Deliveries that reached the receiver, by channel.
    pub delivered: IntCounterVec,
    /// Deliveries marked failed after their last attempt, by channel.
    pub failed: IntCounterVec,
    /// Deliveries waiting to be sent (due now or later), by channel.
    pub pending: IntGaugeVec,
    /// Time of one send attempt, seconds, by channel.
    pub attempt_seconds: HistogramVec,
    /// Notices acknowledged (送达) through their signed link, by document kind.
    pub acknowledged: IntCounterVec,
    /// The families above (for [`defined`]).
    pub families: Vec<Family>,
}

impl DeliveryMetrics {
    /// Creates and registers every delivery metric, every channel × outcome at zero.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let attempts = b.counter(
            "pharmwatch_delivery_attempts_total",
            "Delivery send attempts, by channel and outcome (success, retry, final_failure).",
            &["channel", "outcome"],
        );
        let delivered = b.counter(
            "pharmwatch_delivery_delivered_total",
            "Deliveries accepted by the receiver, by channel.",
            &["channel"],
        );
        let failed = b.counter(
            "pharmwatch_delivery_failed_total",
            "Deliveries marked failed after their last attempt, by channel.",
            &["channel"],
        );
        let acknowledged = b.counter(
            "pharmwatch_delivery_acknowledged_total",
            "Notices acknowledged (送达) through their signed link, by document kind.",
            &["kind"],
        );
        let pending = b.gauge(
            "pharmwatch_delivery_pending",
            "Deliveries waiting to be sent, by channel.",
            &["channel"],
        );
        let attempt_seconds = b.histogram(
            "pharmwatch_delivery_attempt_seconds",
            "Time of one send attempt, seconds, by channel.",
            &["channel"],
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        );
        for c in CHANNELS {
            for o in OUTCOMES {
                attempts.with_label_values(&[*c, *o]);
            }
            delivered.with_label_values(&[*c]);
            failed.with_label_values(&[*c]);
            pending.with_label_values(&[*c]);
            attempt_seconds.with_label_values(&[*c]);
        }
        for k in DOCUMENT_KINDS {
            acknowledged.with_label_values(&[*k]);
        }
        Self {
            registry: b.registry,
            attempts,
            delivered,
            failed,
            pending,
            attempt_seconds,
            acknowledged,
            families: b.families,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide delivery metrics.
pub fn delivery() -> &'static DeliveryMetrics {
    static M: OnceLock<DeliveryMetrics> = OnceLock::new();
    M.get_or_init(DeliveryMetrics::new)
}

/// Families of a nightly run's status: on a failed run these alone are replaced in the
/// textfile, and the rest of the last good run's numbers stay.
const NIGHTLY_STATUS: &[&str] = &[
    "pharmwatch_nightly_last_run_success",
    "pharmwatch_nightly_last_run_timestamp_seconds",
    "pharmwatch_nightly_last_success_timestamp_seconds",
    "pharmwatch_nightly_duration_seconds",
];

/// A nightly run's metrics. The job exits, so they are written to a file that node_exporter's
/// textfile collector serves ([`NightlyMetrics::write_success`], [`NightlyMetrics::write_failure`]).
/// `region` is the region code and `region_name` its name (one name per code).
#[derive(Debug, Clone)]
pub struct NightlyMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// 1 when the last run succeeded, 0 when it failed.
    pub last_run_success: IntGauge,
    /// When the last run (successful or not) ended, Unix seconds.
    pub last_run_timestamp: Gauge,
    /// When the last successful run ended, Unix seconds.
    pub last_success_timestamp: Gauge,
    /// Wall time of the last run, seconds.
    pub duration_seconds: Gauge,
    /// The last business day of the run's risk list, Unix seconds (midnight UTC).
    pub business_day: Gauge,
    /// Lake records of the run's days, by event kind.
    pub records: IntGaugeVec,
    /// Input-file rows by outcome (read, accepted, rejected).
    pub input_rows: IntGaugeVec,
    /// Rows of the day's risk list (the run's last day), by grade, region and enterprise type.
    pub risk_list_rows: IntGaugeVec,
    /// Rows of the day's risk list hit by each indicator, by indicator and grade.
    pub risk_list_indicator_rows: IntGaugeVec,
    /// Percentile of each scored enterprise-day in its segment's training distribution.
    pub model_percentile: HistogramVec,
    /// Training rows per model segment.
    pub model_training_rows: IntGaugeVec,
    /// Enterprise-days the model scored, by segment.
    pub model_scored: IntGaugeVec,
    /// Enterprise-days the model flagged, by segment.
    pub model_flagged: IntGaugeVec,
    /// When the model in use was trained, Unix seconds (0: loaded, unknown).
    pub model_trained_timestamp: Gauge,
    /// Documents issued by this run, by kind.
    pub notices_issued: IntGaugeVec,
    /// Documents in the ledger, by kind (monotone: numbers are never withdrawn).
    pub notices_total: IntCounterVec,
    /// Open cases.
    pub cases_open: IntGauge,
    /// Open cases with a missed deadline (a measure marked overdue).
    pub cases_overdue: IntGauge,
    /// Escalations recorded in the ledger (monotone).
    pub cases_escalated: IntCounter,
    /// The last day the working-day calendar covers, Unix seconds (midnight UTC at its start).
    pub calendar_covered_until: Gauge,
    /// Deadlines of open measures waiting for a year the calendar does not cover yet.
    pub deadlines_pending_calendar: IntGauge,
    /// The families above (for [`defined`]).
    pub families: Vec<Family>,
}

impl NightlyMetrics {
    /// Creates and registers every nightly metric, the bounded label sets at zero.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let last_run_success = b.add(
            must(IntGauge::new(
                "pharmwatch_nightly_last_run_success",
                "1 when the last nightly run succeeded, 0 when it failed.",
            )),
            FamilyType::Gauge,
        );
        let last_run_timestamp = b.float_gauge(
            "pharmwatch_nightly_last_run_timestamp_seconds",
            "When the last nightly run ended (successful or not), Unix seconds.",
        );
        let last_success_timestamp = b.float_gauge(
            "pharmwatch_nightly_last_success_timestamp_seconds",
            "When the last successful nightly run ended, Unix seconds.",
        );
        let duration_seconds = b.float_gauge(
            "pharmwatch_nightly_duration_seconds",
            "Wall time of the last nightly run, seconds.",
        );
        let business_day = b.float_gauge(
            "pharmwatch_nightly_business_day_timestamp_seconds",
            "Last business day of the last successful run's risk list, Unix seconds (midnight UTC).",
        );
        let records = b.gauge(
            "pharmwatch_nightly_records",
            "Lake records of the run's business days, by event kind.",
            &["kind"],
        );
        let input_rows = b.gauge(
            "pharmwatch_nightly_input_rows",
            "Input-file rows of the run by outcome: read, accepted, rejected (dead letter).",
            &["outcome"],
        );
        let risk_list_rows = b.gauge(
            "pharmwatch_risk_list_rows",
            "Rows of the day's risk list (the run's last business day), by risk grade, region and enterprise type.",
            &["grade", "region", "region_name", "enterprise_type"],
        );
        let risk_list_indicator_rows = b.gauge(
            "pharmwatch_risk_list_indicator_rows",
            "Rows of the day's risk list hit by each indicator, by indicator and risk grade.",
            &["indicator", "grade"],
        );
        let model_percentile = b.histogram(
            "pharmwatch_model_score_percentile",
            "Percentile of each enterprise-day the anomaly model scored, in its segment's training distribution (uniform when nothing drifted).",
            &["segment"],
            vec![0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99],
        );
        let model_training_rows = b.gauge(
            "pharmwatch_model_training_rows",
            "Training rows per model segment (of the model the run used).",
            &["segment"],
        );
        let model_scored = b.gauge(
            "pharmwatch_model_scored",
            "Enterprise-days the anomaly model scored in the run, by segment.",
            &["segment"],
        );
        let model_flagged = b.gauge(
            "pharmwatch_model_flagged",
            "Enterprise-days the anomaly model flagged in the run, by segment.",
            &["segment"],
        );
        let model_trained_timestamp = b.float_gauge(
            "pharmwatch_model_trained_timestamp_seconds",
            "When the model the run used was trained, Unix seconds (0 when loaded from an artifact).",
        );
        let notices_issued = b.gauge(
            "pharmwatch_notices_issued",
            "Documents (caution notices, interview notices …) issued by the last nightly run, by kind.",
            &["kind"],
        );
        let notices_total = b.counter(
            "pharmwatch_notices_issued_total",
            "Documents in the case ledger, by kind (numbers are never withdrawn, so this only grows).",
            &["kind"],
        );
        let cases_open = b.add(
            must(IntGauge::new(
                "pharmwatch_cases_open",
                "Open cases in the case ledger.",
            )),
            FamilyType::Gauge,
        );
        let cases_overdue = b.add(
            must(IntGauge::new(
                "pharmwatch_cases_overdue",
                "Open cases with a missed deadline (a measure the ledger sweep marked overdue).",
            )),
            FamilyType::Gauge,
        );
        let cases_escalated = b.add(
            must(IntCounter::new(
                "pharmwatch_cases_escalated_total",
                "Escalations recorded in the case ledger (key-monitoring list, new deadline, referral).",
            )),
            FamilyType::Counter,
        );
        let calendar_covered_until = b.float_gauge(
            "pharmwatch_calendar_covered_until_timestamp_seconds",
            "Last day the working-day calendar covers (built-in and loaded years), Unix seconds (midnight UTC at its start). Deadlines past it wait for the next year's calendar.",
        );
        let deadlines_pending_calendar = b.add(
            must(IntGauge::new(
                "pharmwatch_deadlines_pending_calendar",
                "Deadlines of open measures whose due date waits for a year the working-day calendar does not cover yet (set by pharmwatch calendar import).",
            )),
            FamilyType::Gauge,
        );
        for k in pharmwatch_schemas::EventKind::ALL {
            records.with_label_values(&[k.as_str()]);
        }
        for o in ["read", "accepted", "rejected"] {
            input_rows.with_label_values(&[o]);
        }
        for i in crate::indicators::INDICATORS
            .iter()
            .chain(&["model_anomaly"])
        {
            for g in GRADES {
                risk_list_indicator_rows.with_label_values(&[*i, *g]);
            }
        }
        for k in DOCUMENT_KINDS {
            notices_issued.with_label_values(&[*k]);
            notices_total.with_label_values(&[*k]);
        }
        Self {
            registry: b.registry,
            last_run_success,
            last_run_timestamp,
            last_success_timestamp,
            duration_seconds,
            business_day,
            records,
            input_rows,
            risk_list_rows,
            risk_list_indicator_rows,
            model_percentile,
            model_training_rows,
            model_scored,
            model_flagged,
            model_trained_timestamp,
            notices_issued,
            notices_total,
            cases_open,
            cases_overdue,
            cases_escalated,
            calendar_covered_until,
            deadlines_pending_calendar,
            families: b.families,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }

    /// Writes a successful run's metrics to `path` (atomically), stamped now.
    pub fn write_success(&self, path: &Path, seconds: f64) -> Result<()> {
        let now = unix_now();
        self.last_run_success.set(1);
        self.last_run_timestamp.set(now);
        self.last_success_timestamp.set(now);
        self.duration_seconds.set(seconds);
        write_textfile(path, &self.render())
    }

    /// Records a failed run in `path` (atomically): the status families are replaced, the last
    /// successful run's time and every other number of the file stay as they were.
    pub fn write_failure(path: &Path, seconds: f64) -> Result<()> {
        let previous = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(PipelineError::io(path, e)),
        };
        let last_success = previous
            .lines()
            .find_map(|l| {
                l.strip_prefix("pharmwatch_nightly_last_success_timestamp_seconds ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        let status = Self::new();
        status.last_run_success.set(0);
        status.last_run_timestamp.set(unix_now());
        status.last_success_timestamp.set(last_success);
        status.duration_seconds.set(seconds);
        let families: Vec<_> = status
            .registry
            .gather()
            .into_iter()
            .filter(|f| NIGHTLY_STATUS.contains(&f.name()))
            .collect();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .map_err(|e| PipelineError::Internal(format!("encoding metrics: {e}")))?;
        let mut text: String = previous
            .lines()
            .filter(|l| !NIGHTLY_STATUS.contains(&family_of_line(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&String::from_utf8_lossy(&buf));
        write_textfile(path, &text)
    }
}

impl Default for NightlyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The family a line of the text format belongs to (`# HELP name …`, `# TYPE name …`,
/// `name{…} v`, `name v`).
fn family_of_line(line: &str) -> &str {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .unwrap_or(line);
    let end = rest.find(['{', ' ']).unwrap_or(rest.len());
    &rest[..end]
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Writes `text` to `path` whole: to `path.tmp` in the same directory, then renamed over
/// `path`, so the textfile collector never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| PipelineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PipelineError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_with_its_prefix() {
        let m = StreamMetrics::new();
        m.consumed.with_label_values(&["sales"]).inc();
        m.batch_seconds
            .with_label_values(&[] as &[&str])
            .observe(0.01);
        let text = m.render();
        assert!(
            text.contains("pharmwatch_stream_consumed_total{kind=\"sales\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pharmwatch_stream_batch_seconds_bucket"),
            "{text}"
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("pharmwatch_"), "{line}");
        }
    }

    #[test]
    fn delivery_metrics_render_every_channel_and_outcome() {
        let m = DeliveryMetrics::new();
        m.attempts.with_label_values(&["webhook", "retry"]).inc();
        m.pending.with_label_values(&["email"]).set(3);
        let text = m.render();
        assert!(
            text.contains(
                "pharmwatch_delivery_attempts_total{channel=\"webhook\",outcome=\"retry\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("pharmwatch_delivery_pending{channel=\"email\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "pharmwatch_delivery_attempts_total{channel=\"dingtalk\",outcome=\"final_failure\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn families_are_unique_prefixed_and_never_labelled_by_enterprise() {
        let all = defined();
        let mut names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a family is defined twice");
        for f in &all {
            assert!(f.name.starts_with("pharmwatch_"), "{}", f.name);
            if f.kind == FamilyType::Counter {
                assert!(f.name.ends_with("_total"), "{}", f.name);
            }
            for l in &f.labels {
                assert!(
                    !l.contains("enterprise_id") && l != "case_id",
                    "{}: {l}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_the_numbers_of_the_last_good_run() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("pharmwatch_nightly.prom");
        let m = NightlyMetrics::new();
        m.cases_open.set(7);
        m.write_success(&path, 12.5)
            .unwrap_or_else(|e| panic!("{e}"));
        let good = std::fs::read_to_string(&path).unwrap_or_default();
        let success_line = good
            .lines()
            .find(|l| l.starts_with("pharmwatch_nightly_last_success_timestamp_seconds "))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(!success_line.is_empty(), "{good}");
        NightlyMetrics::write_failure(&path, 3.0).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.contains("pharmwatch_nightly_last_run_success 0"),
            "{text}"
        );
        assert!(text.contains(&success_line), "{text}");
        assert!(text.contains("pharmwatch_cases_open 7"), "{text}");
        assert!(
            text.contains("pharmwatch_nightly_duration_seconds 3"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE pharmwatch_nightly_last_run_success ")
                .count(),
            1,
            "{text}"
        );
        assert!(!dir.path().join("pharmwatch_nightly.prom.tmp").exists());
    }
}
