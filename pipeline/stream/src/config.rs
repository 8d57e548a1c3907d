//! Configuration of the stream service and the produce command: the `[stream]` table of
//! `pharmwatch.toml` (see `config/pharmwatch.example.toml`), each key overridable from the
//! environment as `PHARMWATCH__STREAM__<KEY>` (`PHARMWATCH__STREAM__BROKERS`); the flat
//! `PHARMWATCH_<KEY>` variables of the first release still apply for this release.
//!
//! Invariants: every topic name is non-empty and the event topics are distinct; bounds are
//! positive; unknown keys in the file are an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pharmwatch_schemas::EventKind;

use crate::error::Result;
use pharmwatch_core::config::Section;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::indicators::Thresholds;

/// The stream service's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// Stable id of this instance in the group (Kafka static membership, `group.instance.id`),
    /// e.g. `stream-1`. A restarted instance with the same id takes its partitions back at
    /// once instead of waiting for the group to notice the old one is gone. Every instance of
    /// a group needs a different id.
    pub instance_id: Option<String>,
    /// Prefix of the event topics: `<prefix><kind>` with `_` written `-`
    /// (`pharmwatch.sales`, `pharmwatch.product-test`).
    pub topic_prefix: String,
    /// Per-kind topic names overriding the prefix rule (`sales = "platform.sales.v1"`).
    pub topics: BTreeMap<String, String>,
    /// Dead-letter topic for rejected messages.
    pub dead_letter_topic: String,
    /// Topic of the real-time risk events.
    pub risk_events_topic: String,
    /// The lake accepted records land in (shared with the nightly job).
    pub lake: PathBuf,
    /// The risk store (SQLite file), shared with the nightly job.
    pub store: PathBuf,
    /// The nightly job's output directory whose `stream_baseline/` seeds the windows
    /// (baselines, opening stock, failed batches, known trace codes). Optional: without it the
    /// stream starts with empty history.
    pub baseline: Option<PathBuf>,
    /// Largest micro-batch, in messages.
    pub batch_max_records: usize,
    /// Longest wait for the first message of a micro-batch, in milliseconds; after it, the
    /// batch takes what has already arrived (up to `batch_max_records`) and closes.
    pub batch_max_wait_ms: u64,
    /// Allowed lateness in seconds: a record older than the watermark minus this is late
    /// (landed and counted, not judged again), and a business day is closed (reconciled) once
    /// the watermark is this far past its end.
    pub allowed_lateness_secs: i64,
    /// How long a business day waits, in this machine's time, after the watermark first
    /// passed its close, in milliseconds: the day closes only if the watermark still passes it
    /// then, with each topic's high watermark asked afresh. A producer's batches for two topics
    /// reach the broker in any order (the next day's sales a moment before this day's
    /// purchases); this is the moment they are given.
    pub close_grace_ms: u64,
    /// How far ahead of this machine's clock an event time may lie, in seconds (enterprise
    /// clocks drift): a record further ahead is rejected to the dead letter — a single record
    /// dated 2099 would otherwise carry the watermark past every open day and close them
    /// before their records arrive.
    pub max_future_secs: i64,
    /// Address of `/metrics` and `/healthz`.
    pub metrics_listen: String,
    /// How long start-up waits for the broker before giving up, in seconds.
    pub startup_timeout_secs: u64,
    /// How long a write waits for another writer of the store (the nightly job, another
    /// instance) before the micro-batch fails as retryable and is judged again, in
    /// milliseconds.
    pub store_busy_timeout_ms: u64,
    /// Indicator thresholds (the nightly job's defaults).
    pub thresholds: Thresholds,
    /// Extra librdkafka properties for the consumer and producer (e.g. security settings).
    pub kafka: BTreeMap<String, String>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "pharmwatch-stream".into(),
            instance_id: None,
            topic_prefix: "pharmwatch.".into(),
            topics: BTreeMap::new(),
            dead_letter_topic: "pharmwatch.dead-letter".into(),
            risk_events_topic: "pharmwatch.risk-events".into(),
            lake: PathBuf::from("lake"),
            store: PathBuf::from("out").join(pharmwatch_core::store::STORE_FILE),
            baseline: None,
            batch_max_records: 20_000,
            batch_max_wait_ms: 100,
            allowed_lateness_secs: 600,
            close_grace_ms: 5000,
            max_future_secs: 3600,
            metrics_listen: "127.0.0.1:9464".into(),
            startup_timeout_secs: 10,
            store_busy_timeout_ms: 60_000,
            thresholds: Thresholds::default(),
            kafka: BTreeMap::new(),
        }
    }
}

impl Section for StreamConfig {
    const NAME: &'static str = "stream";
    const LEGACY_ENV: &'static [(&'static str, &'static str)] = &[
        ("PHARMWATCH_BROKERS", "brokers"),
        ("PHARMWATCH_GROUP_ID", "group_id"),
        ("PHARMWATCH_INSTANCE_ID", "instance_id"),
        ("PHARMWATCH_TOPIC_PREFIX", "topic_prefix"),
        ("PHARMWATCH_DEAD_LETTER_TOPIC", "dead_letter_topic"),
        ("PHARMWATCH_RISK_EVENTS_TOPIC", "risk_events_topic"),
        ("PHARMWATCH_LAKE", "lake"),
        ("PHARMWATCH_STORE", "store"),
        ("PHARMWATCH_BASELINE", "baseline"),
        ("PHARMWATCH_BATCH_MAX_RECORDS", "batch_max_records"),
        ("PHARMWATCH_BATCH_MAX_WAIT_MS", "batch_max_wait_ms"),
        ("PHARMWATCH_ALLOWED_LATENESS_SECS", "allowed_lateness_secs"),
        ("PHARMWATCH_MAX_FUTURE_SECS", "max_future_secs"),
        ("PHARMWATCH_METRICS_LISTEN", "metrics_listen"),
        ("PHARMWATCH_STARTUP_TIMEOUT_SECS", "startup_timeout_secs"),
    ];
}

impl StreamConfig {
    /// Reads the `[stream]` table of `pharmwatch.toml` (if given) over the defaults, with
    /// `PHARMWATCH__STREAM__*` overrides, and checks it.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with(path, std::env::vars())
    }

    /// [`StreamConfig::load`] with the environment given as pairs.
    pub fn load_with(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let cfg: Self = pharmwatch_core::config::load_with(path, env)?;
        cfg.check().map_err(|e| {
            let origin = path.map_or("the built-in defaults".to_string(), |p| {
                p.display().to_string()
            });
            let what = match e {
                CoreError::Config(m) => m,
                other => other.to_string(),
            };
            CoreError::Config(format!("[stream] of {origin}: {what}"))
        })?;
        Ok(cfg)
    }

    /// Checks the invariants.
    pub fn check(&self) -> pharmwatch_core::Result<()> {
        let bad = |m: String| Err(CoreError::Config(m));
        if self.brokers.trim().is_empty() {
            return bad("brokers is empty".into());
        }
        if self.group_id.trim().is_empty() {
            return bad("group_id is empty".into());
        }
        for k in self.topics.keys() {
            if EventKind::parse(k).is_none() {
                return bad(format!(
                    "topics.{k}: unknown event kind (one of {})",
                    EventKind::NAMES.join(", ")
                ));
            }
        }
        let mut names: Vec<String> = EventKind::ALL.iter().map(|k| self.topic(*k)).collect();
        names.push(self.dead_letter_topic.clone());
        names.push(self.risk_events_topic.clone());
        if names.iter().any(|n| n.trim().is_empty()) {
            return bad("a topic name is empty".into());
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return bad(format!(
                "topic names must be distinct, got {}",
                names.join(", ")
            ));
        }
        if self.batch_max_records == 0 || self.batch_max_wait_ms == 0 {
            return bad("batch_max_records and batch_max_wait_ms must be positive".into());
        }
        if self.allowed_lateness_secs < 0 {
            return bad("allowed_lateness_secs must not be negative".into());
        }
        if self.close_grace_ms > 600_000 {
            return bad(format!(
                "close_grace_ms is {} (at most 600000: a day's close waits that long)",
                self.close_grace_ms
            ));
        }
        Ok(())
    }

    /// The topic of an event kind.
    pub fn topic(&self, kind: EventKind) -> String {
        self.topics
            .get(kind.as_str())
            .cloned()
            .unwrap_or_else(|| format!("{}{}", self.topic_prefix, kind.as_str().replace('_', "-")))
    }

    /// The event kind of a topic (asked once per message, so it compares without building
    /// the topic names).
    pub fn kind_of(&self, topic: &str) -> Option<EventKind> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| match self.topics.get(k.as_str()) {
                Some(t) => t == topic,
                None => topic
                    .strip_prefix(self.topic_prefix.as_str())
                    .is_some_and(|rest| {
                        rest.len() == k.as_str().len()
                            && rest
                                .bytes()
                                .zip(k.as_str().bytes())
                                .all(|(a, b)| a == if b == b'_' { b'-' } else { b })
                    }),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_prefix_and_overrides() {
        let mut c = StreamConfig::default();
        assert_eq!(c.topic(EventKind::Sales), "pharmwatch.sales");
        assert_eq!(c.topic(EventKind::ProductTest), "pharmwatch.product-test");
        c.topics.insert("sales".into(), "platform.sales.v1".into());
        assert_eq!(
            c.kind_of("pharmwatch.product-test"),
            Some(EventKind::ProductTest)
        );
        assert_eq!(c.kind_of("pharmwatch.product_test"), None);
        assert_eq!(c.kind_of("pharmwatch.product-tes"), None);
        assert_eq!(c.kind_of("platform.sales.v1"), Some(EventKind::Sales));
        assert_eq!(c.kind_of("pharmwatch.sales"), None);
        c.check().unwrap();
    }

    #[test]
    fn environment_overrides_and_errors_name_the_key() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        // The variables of the first release still apply (with a warning) …
        let c = StreamConfig::load_with(
            None,
            pairs(&[
                ("PHARMWATCH_BROKERS", "10.0.0.1:9092"),
                ("PHARMWATCH_BATCH_MAX_RECORDS", "500"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.brokers, "10.0.0.1:9092");
        assert_eq!(c.batch_max_records, 500);
        // … and the layered ones, which name the section.
        let c = StreamConfig::load_with(None, pairs(&[("PHARMWATCH__STREAM__GROUP_ID", "g2")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.group_id, "g2");
        let err = StreamConfig::load_with(None, pairs(&[("PHARMWATCH_BATCH_MAX_WAIT_MS", "soon")]))
            .expect_err("not a number");
        assert!(err.to_string().contains("batch_max_wait_ms"), "{err}");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("pharmwatch.toml");
        std::fs::write(&path, "[stream]\nbrokerz = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
        let err = StreamConfig::load_with(Some(&path), pairs(&[])).expect_err("unknown key");
        assert!(err.to_string().contains("brokerz"), "{err}");
    }
}
