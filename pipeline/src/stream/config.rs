//! Configuration of the stream service and the produce command: a TOML file
//! (`pharmwatch.toml`, see `pharmwatch.example.toml`), each scalar overridable from the
//! environment as `PHARMWATCH_<FIELD>` (upper case), e.g. `PHARMWATCH_BROKERS`,
//! `PHARMWATCH_GROUP_ID`, `PHARMWATCH_INSTANCE_ID`, `PHARMWATCH_METRICS_LISTEN`.
//!
//! Invariants: every topic name is non-empty and the event topics are distinct; bounds are
//! positive; unknown keys in the file are an error naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use pharmwatch_schemas::EventKind;

use crate::error::{PipelineError, Result};
use crate::indicators::Thresholds;

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
    /// Address of `/metrics` and `/healthz`.
    pub metrics_listen: String,
    /// How long start-up waits for the broker before giving up, in seconds.
    pub startup_timeout_secs: u64,
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
            store: PathBuf::from("out").join(crate::store::STORE_FILE),
            baseline: None,
            batch_max_records: 20_000,
            batch_max_wait_ms: 100,
            allowed_lateness_secs: 600,
            metrics_listen: "127.0.0.1:9464".into(),
            startup_timeout_secs: 10,
            thresholds: Thresholds::default(),
            kafka: BTreeMap::new(),
        }
    }
}

impl StreamConfig {
    /// Reads the file (if given), then applies `PHARMWATCH_*` environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| PipelineError::io(p, e))?;
                toml::from_str(&text).map_err(|e| {
                    PipelineError::Config(format!("{}: {}", p.display(), e.to_string().trim()))
                })?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Applies `PHARMWATCH_<FIELD>` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T> {
            v.trim().parse().map_err(|_| {
                PipelineError::Config(format!("environment {k}={v:?}: not a valid number"))
            })
        }
        let s = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(v) = s("PHARMWATCH_BROKERS") {
            self.brokers = v;
        }
        if let Some(v) = s("PHARMWATCH_GROUP_ID") {
            self.group_id = v;
        }
        if let Some(v) = s("PHARMWATCH_INSTANCE_ID") {
            self.instance_id = Some(v);
        }
        if let Some(v) = s("PHARMWATCH_TOPIC_PREFIX") {
            self.topic_prefix = v;
        }
        if let Some(v) = s("PHARMWATCH_DEAD_LETTER_TOPIC") {
            self.dead_letter_topic = v;
        }
        if let Some(v) = s("PHARMWATCH_RISK_EVENTS_TOPIC") {
            self.risk_events_topic = v;
        }
        if let Some(v) = s("PHARMWATCH_LAKE") {
            self.lake = PathBuf::from(v);
        }
        if let Some(v) = s("PHARMWATCH_STORE") {
            self.store = PathBuf::from(v);
        }
        if let Some(v) = s("PHARMWATCH_BASELINE") {
            self.baseline = Some(PathBuf::from(v));
        }
        if let Some(v) = s("PHARMWATCH_BATCH_MAX_RECORDS") {
            self.batch_max_records = num("PHARMWATCH_BATCH_MAX_RECORDS", &v)?;
        }
        if let Some(v) = s("PHARMWATCH_BATCH_MAX_WAIT_MS") {
            self.batch_max_wait_ms = num("PHARMWATCH_BATCH_MAX_WAIT_MS", &v)?;
        }
        if let Some(v) = s("PHARMWATCH_ALLOWED_LATENESS_SECS") {
            self.allowed_lateness_secs = num("PHARMWATCH_ALLOWED_LATENESS_SECS", &v)?;
        }
        if let Some(v) = s("PHARMWATCH_METRICS_LISTEN") {
            self.metrics_listen = v;
        }
        if let Some(v) = s("PHARMWATCH_STARTUP_TIMEOUT_SECS") {
            self.startup_timeout_secs = num("PHARMWATCH_STARTUP_TIMEOUT_SECS", &v)?;
        }
        Ok(())
    }

    /// Checks the invariants.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(PipelineError::Config(m));
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
        let mut c = StreamConfig::default();
        c.apply_env(|k| match k {
            "PHARMWATCH_BROKERS" => Some("10.0.0.1:9092".into()),
            "PHARMWATCH_BATCH_MAX_RECORDS" => Some("500".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.brokers, "10.0.0.1:9092");
        assert_eq!(c.batch_max_records, 500);
        let err = c
            .apply_env(|k| (k == "PHARMWATCH_BATCH_MAX_WAIT_MS").then(|| "soon".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("PHARMWATCH_BATCH_MAX_WAIT_MS"),
            "{err}"
        );
        let err = toml::from_str::<StreamConfig>("brokerz = \"x\"").unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
    }
}
