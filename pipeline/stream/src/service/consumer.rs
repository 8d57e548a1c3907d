//! The service's Kafka clients: the consumer context that records rebalances and the high
//! watermarks librdkafka's statistics report, the client settings, and the start-up check that
//! the brokers answer and the topics exist with one partition count.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::error::{Result, StreamError};
use pharmwatch_schemas::EventKind;

use crate::config::StreamConfig;

/// A rebalance the consumer reported, applied by the consuming loop between batches.
pub(super) enum Reb {
    Assign(Vec<(String, i32)>),
    Revoke(Vec<(String, i32)>),
}

/// Consumer context: records rebalances, and from librdkafka's statistics the high watermarks
/// and whether any broker of the cluster is connected.
pub(super) struct Ctx {
    pub(super) rebalances: Mutex<Vec<Reb>>,
    pub(super) high: Mutex<HashMap<(String, i32), i64>>,
    /// Whether a broker of the cluster (not a bootstrap address) was up at the last
    /// statistics; `None` before the first.
    pub(super) broker_up: Mutex<Option<bool>>,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        if let Ok(mut b) = self.broker_up.lock() {
            *b = Some(up);
        }
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

pub(super) fn tpl_list(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
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
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        if let Ok(mut v) = self.rebalances.lock() {
            v.push(ev);
        }
    }
}

/// A broker call that failed while doing `context`.
pub(super) fn kafka_err(context: impl Into<String>, e: rdkafka::error::KafkaError) -> StreamError {
    StreamError::Broker {
        context: context.into(),
        source: e,
    }
}

/// The broker answered, but not as the service needs (`reason` says what to do).
pub(super) fn kafka_refusal(context: impl Into<String>, reason: impl Into<String>) -> StreamError {
    StreamError::Kafka {
        context: context.into(),
        reason: reason.into(),
    }
}

pub(super) fn client_config(cfg: &StreamConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    c
}

/// Checks that the brokers answer and the topics exist with one partition count; returns it.
pub(super) fn check_topics(consumer: &BaseConsumer<Ctx>, cfg: &StreamConfig) -> Result<i32> {
    let timeout = Duration::from_secs(cfg.startup_timeout_secs.max(1));
    let md = consumer.fetch_metadata(None, timeout).map_err(|e| {
        kafka_refusal(
            format!("brokers {}", cfg.brokers),
            format!(
                "cannot reach the broker within {} s: {e}. Is it running, and is `brokers` of [stream] (PHARMWATCH__STREAM__BROKERS) right?",
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
        return Err(kafka_refusal(
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
        return Err(kafka_refusal(
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

/// The group consumer: manual offset commits (the store's offsets are the truth), range
/// assignment (partition p of every event topic goes to one instance), statistics every 250 ms
/// for the high watermarks, and static membership when the instance has an id.
pub(super) fn consumer(cfg: &StreamConfig) -> Result<BaseConsumer<Ctx>> {
    let ctx = Ctx {
        rebalances: Mutex::new(Vec::new()),
        high: Mutex::new(HashMap::new()),
        broker_up: Mutex::new(None),
    };
    let mut c = client_config(cfg);
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
        .map_err(|e| kafka_err(format!("consumer for {}", cfg.brokers), e))
}

/// The producer of the outbox (risk events and dead letters), waiting for every replica. A
/// send the broker does not confirm within 15 s (librdkafka's default is five minutes) fails:
/// its row stays in the outbox for the next batch, and the consuming loop is not held while the
/// broker is away (`message.timeout.ms` in `[stream.kafka]` overrides it).
pub(super) fn producer(cfg: &StreamConfig) -> Result<FutureProducer> {
    let mut c = client_config(cfg);
    if !cfg.kafka.contains_key("message.timeout.ms") {
        c.set("message.timeout.ms", "15000");
    }
    c.set("acks", "all").set("linger.ms", "5");
    c.create()
        .map_err(|e| kafka_err(format!("producer for {}", cfg.brokers), e))
}
