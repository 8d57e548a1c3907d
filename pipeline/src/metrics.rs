//! Every Prometheus metric pharmwatch exposes, defined in one place. Names carry the
//! `pharmwatch_` prefix; labels are bounded (event kind, indicator, partition number, outcome)
//! and never an enterprise id.

use std::sync::OnceLock;

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

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
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Metric definitions are constants: a failure is a programming error caught by tests.
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl StreamMetrics {
    /// Creates and registers every stream metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let consumed = counter(
            "pharmwatch_stream_consumed_total",
            "Messages consumed from the event topics (each offset once).",
            &["kind"],
        );
        let accepted = counter(
            "pharmwatch_stream_accepted_total",
            "Records accepted and landed in the lake.",
            &["kind"],
        );
        let rejected = counter(
            "pharmwatch_stream_rejected_total",
            "Messages rejected to the dead-letter topic, by the offending field.",
            &["kind", "field"],
        );
        let late = counter(
            "pharmwatch_stream_late_total",
            "Accepted records older than the watermark minus the allowed lateness.",
            &["kind"],
        );
        let replayed = counter(
            "pharmwatch_stream_replayed_total",
            "Messages skipped because the store already held their effect (redelivery after a crash or rebalance).",
            &["kind"],
        );
        let risk_events = counter(
            "pharmwatch_stream_risk_events_total",
            "New real-time risk events, by indicator.",
            &["indicator"],
        );
        let gap = counter(
            "pharmwatch_stream_gap_messages_total",
            "Messages gone from the broker when a partition resumed from the store's offset (retention), never processed.",
            &["partition"],
        );
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = must(HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets),
                &[],
            ));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let batch_seconds = hist(
            "pharmwatch_stream_batch_seconds",
            "Micro-batch processing time, from decoding to the offset commit.",
            vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let batch_records = hist(
            "pharmwatch_stream_batch_records",
            "Messages per micro-batch.",
            vec![1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 20000.0, 50000.0],
        );
        let detection_seconds = hist(
            "pharmwatch_stream_detection_seconds",
            "Wall-clock time from a triggering record's event time to its risk event (live traffic only).",
            vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
        );
        let consumer_lag = must(IntGaugeVec::new(
            Opts::new(
                "pharmwatch_stream_consumer_lag",
                "Messages between this consumer's position and the partition's high watermark.",
            ),
            &["kind", "partition"],
        ));
        must(registry.register(Box::new(consumer_lag.clone())));
        let assigned_partitions = must(IntGauge::new(
            "pharmwatch_stream_assigned_partitions",
            "Partition numbers currently assigned to this instance.",
        ));
        must(registry.register(Box::new(assigned_partitions.clone())));
        let watermark = must(GaugeVec::new(
            Opts::new(
                "pharmwatch_stream_watermark_seconds",
                "Event-time watermark per partition, Unix seconds.",
            ),
            &["partition"],
        ));
        must(registry.register(Box::new(watermark.clone())));
        let outbox_pending = must(IntGauge::new(
            "pharmwatch_stream_outbox_pending",
            "Risk events and dead letters stored but not yet published to Kafka.",
        ));
        must(registry.register(Box::new(outbox_pending.clone())));
        let phase_seconds = must(CounterVec::new(
            Opts::new(
                "pharmwatch_stream_phase_seconds_total",
                "Seconds spent per stage of the consume loop: poll, decode, watermarks, engine (engine_rules, engine_windows, engine_close), store, commit, publish; beside the engine on a second thread: lake, engine_deltas, lake_write.",
            ),
            &["phase"],
        ));
        must(registry.register(Box::new(phase_seconds.clone())));
        Self {
            registry,
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
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
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
/// `serve`). Labels: `channel` is one of `webhook`, `dingtalk`, `wecom`, `email`, `manual`;
/// `outcome` of an attempt is `success`, `retry` or `final_failure`; `kind` is a document kind.
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
}

impl DeliveryMetrics {
    /// Creates and registers every delivery metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let attempts = counter(
            "pharmwatch_delivery_attempts_total",
            "Delivery send attempts, by channel and outcome (success, retry, final_failure).",
            &["channel", "outcome"],
        );
        let delivered = counter(
            "pharmwatch_delivery_delivered_total",
            "Deliveries accepted by the receiver, by channel.",
            &["channel"],
        );
        let failed = counter(
            "pharmwatch_delivery_failed_total",
            "Deliveries marked failed after their last attempt, by channel.",
            &["channel"],
        );
        let acknowledged = counter(
            "pharmwatch_delivery_acknowledged_total",
            "Notices acknowledged (送达) through their signed link, by document kind.",
            &["kind"],
        );
        let pending = must(IntGaugeVec::new(
            Opts::new(
                "pharmwatch_delivery_pending",
                "Deliveries waiting to be sent, by channel.",
            ),
            &["channel"],
        ));
        must(registry.register(Box::new(pending.clone())));
        let attempt_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "pharmwatch_delivery_attempt_seconds",
                "Time of one send attempt, seconds, by channel.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["channel"],
        ));
        must(registry.register(Box::new(attempt_seconds.clone())));
        Self {
            registry,
            attempts,
            delivered,
            failed,
            pending,
            attempt_seconds,
            acknowledged,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
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
    fn delivery_metrics_render() {
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
    }
}
