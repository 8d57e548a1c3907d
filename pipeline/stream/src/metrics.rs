//! The stream service's metrics (`pharmwatch stream`): records consumed / accepted /
//! rejected / late by kind, real-time risk events, batch latency and its phases, consumer lag,
//! watermarks and the outbox. Labels are bounded (event kind, field, indicator, phase,
//! partition number), never an enterprise id; the bounded sets start at zero.

use std::sync::OnceLock;

use prometheus::{
    CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use pharmwatch_core::metrics::{Builder, Family, FamilyType, expose, must, render};

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
    /// Micro-batches judged again after a transient failure (the store busy, the disk full).
    pub batch_retries: IntCounterVec,
    /// Commits refused because another instance took the partition over (the ownership epoch
    /// moved on: a paused or partitioned instance woke up after a rebalance), by partition.
    pub fenced: IntCounterVec,
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
    /// Entries of the in-memory state of this instance's partitions, by part (windows,
    /// enterprise days, reported days, batch sales, day batches, event ids).
    pub state_entries: IntGaugeVec,
    /// Time spent per stage of the consume loop, seconds: where a slow batch spends its time.
    /// On the consuming thread: poll, decode (itself on two threads for a large batch),
    /// watermarks, engine (steps engine_rules, engine_windows, engine_close), store, commit,
    /// publish. Beside the engine, on a second thread: lake (records to Arrow),
    /// engine_deltas (the DataFusion window deltas), lake_write (Parquet files).
    pub phase_seconds: CounterVec,
    /// The families above (for `pharmwatch::metrics::defined`).
    pub families: Vec<Family>,
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
        let batch_retries = b.counter(
            "pharmwatch_stream_batch_retries_total",
            "Micro-batches judged again after a transient failure (the store busy or locked, the disk full, the broker away).",
            &[],
        );
        let fenced = b.counter(
            "pharmwatch_stream_fenced_total",
            "Micro-batch commits refused for a partition another instance has taken over since this one loaded it (the batch is redone without it).",
            &["partition"],
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
        let state_entries = b.gauge(
            "pharmwatch_stream_state_entries",
            "Entries of the in-memory state of this instance's partitions, by part: windows (enterprise x product x day, 29 days), enterprise_days, reported, batch_sales, day_batches, event_ids (the open days' accepted ids).",
            &["part"],
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
        let m = Self {
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
            batch_retries,
            fenced,
            detection_seconds,
            consumer_lag,
            assigned_partitions,
            watermark,
            outbox_pending,
            state_entries,
            phase_seconds,
            families: b.families,
        };
        m.zero_bounded_series();
        m
    }

    /// Creates the series of every bounded label set at zero, so rates and sums have series
    /// before the first event.
    fn zero_bounded_series(&self) {
        for k in pharmwatch_schemas::EventKind::ALL {
            for c in [&self.consumed, &self.accepted, &self.late, &self.replayed] {
                c.with_label_values(&[k.as_str()]);
            }
            // A reject names a field of the contract, the message key, or `-` for the message
            // as a whole; any other name a sender's message made up is `other`.
            for f in ["-", "key", "other"] {
                self.rejected.with_label_values(&[k.as_str(), f]);
            }
            for f in k.fields() {
                self.rejected.with_label_values(&[k.as_str(), f.name]);
            }
        }
        for i in pharmwatch_core::indicators::INDICATORS {
            self.risk_events.with_label_values(&[*i]);
        }
        for p in PHASES {
            self.phase_seconds.with_label_values(&[*p]);
        }
        for (part, _) in crate::engine::PartitionState::default().entries() {
            self.state_entries.with_label_values(&[part]);
        }
        for h in [
            &self.batch_seconds,
            &self.batch_records,
            &self.detection_seconds,
        ] {
            h.with_label_values(&[] as &[&str]);
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

/// The process-wide stream metrics (exposed on the process's `/metrics`).
pub fn stream() -> &'static StreamMetrics {
    static M: OnceLock<StreamMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = StreamMetrics::new();
        expose(&m.registry);
        m
    })
}

/// The `field` label of a rejected message: a field of the kind's contract, `key`, or `-`;
/// any other name (an unknown field a sender made up) is `other`, so the series stay bounded
/// whatever the senders send.
pub fn field_label<'a>(kind: &str, field: &'a str) -> &'a str {
    let known = pharmwatch_schemas::EventKind::ALL
        .iter()
        .find(|k| k.as_str() == kind)
        .is_some_and(|k| k.fields().iter().any(|f| f.name == field));
    if known || field == "-" || field == "key" {
        field
    } else {
        "other"
    }
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
}
