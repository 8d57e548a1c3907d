//! `pharmwatch produce`: publishes a lake's records to the event topics in event-time order,
//! one JSON message per record as in `schemas/contracts/`, keyed by enterprise credit code (so
//! one enterprise's records share a partition number across topics), optionally at a fixed
//! rate. For demos, tests and benchmarks of the stream service.
//!
//! Invariant: within each topic-partition, messages are in event-time order (then event id),
//! and every record of the chosen days is sent once; the command fails if any delivery fails.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde::Serialize;

use pharmwatch_schemas::{
    EventKind, InspectionFinding, InventorySnapshot, ProductTestRecord, ProductionRecord,
    PurchaseRecord, SalesRecord,
};

use crate::config::StreamConfig;
use crate::error::{Result, StreamError};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::query::{register_urls, table_rows};
use pharmwatch_core::remote_lake::LakeSource;

/// What was sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProduceSummary {
    /// Messages sent per topic.
    pub per_topic: Vec<(String, u64)>,
    /// Messages in all.
    pub sent: u64,
    /// Seconds.
    pub seconds: f64,
    /// Messages per second achieved.
    pub rate: f64,
}

/// One message to send.
struct Msg {
    ms: i64,
    event_id: String,
    kind: EventKind,
    key: String,
    payload: Vec<u8>,
}

struct Ctx {
    failed: Arc<AtomicU64>,
    first_error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut f) = self.first_error.lock()
                && f.is_none()
            {
                *f = Some(e.to_string());
            }
        }
    }
}

async fn read_kind<T>(
    ctx: &SessionContext,
    kind: EventKind,
    files: &[String],
    out: &mut Vec<Msg>,
) -> Result<()>
where
    T: serde::de::DeserializeOwned + Serialize + pharmwatch_schemas::Validate,
{
    if files.is_empty() {
        return Ok(());
    }
    let name = format!("{}_lake", kind.as_str());
    register_urls(ctx, &name, kind.lake_schema(), files).await?;
    let cols: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
    let view = format!("{}_wire", kind.as_str());
    ctx.sql(&format!(
        "CREATE VIEW {view} AS SELECT {} FROM {name}",
        cols.join(", ")
    ))
    .await
    .map_err(|e| CoreError::query(&view, e))?;
    let rows: Vec<T> = table_rows(ctx, &view).await?;
    for r in rows {
        let payload = serde_json::to_vec(&r).map_err(|e| CoreError::Internal(e.to_string()))?;
        out.push(Msg {
            ms: r.event_time().timestamp_millis(),
            event_id: String::new(),
            kind,
            key: r.enterprise_id().to_string(),
            payload,
        });
        if let Some(m) = out.last_mut() {
            // Event ids order ties; read back from the JSON cheaply.
            m.event_id = serde_json::from_slice::<serde_json::Value>(&m.payload)
                .ok()
                .and_then(|v| {
                    v.get("event_id")
                        .and_then(|x| x.as_str().map(str::to_string))
                })
                .unwrap_or_default();
        }
    }
    Ok(())
}

/// Reads `[from, to]` of the lake (every day when not given) in event-time order.
async fn read_lake(
    lake_dir: &Path,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<Msg>> {
    let ctx = SessionContext::new();
    let lake = LakeSource::open(lake_dir, &ctx)?;
    let from = from.unwrap_or(NaiveDate::MIN);
    let to = to.unwrap_or(NaiveDate::MAX);
    let mut msgs = Vec::new();
    for kind in EventKind::ALL {
        let files = lake.files(*kind, from, to).await?;
        match kind {
            EventKind::Production => {
                read_kind::<ProductionRecord>(&ctx, *kind, &files, &mut msgs).await?
            }
            EventKind::Sales => read_kind::<SalesRecord>(&ctx, *kind, &files, &mut msgs).await?,
            EventKind::Purchase => {
                read_kind::<PurchaseRecord>(&ctx, *kind, &files, &mut msgs).await?
            }
            EventKind::Inventory => {
                read_kind::<InventorySnapshot>(&ctx, *kind, &files, &mut msgs).await?
            }
            EventKind::ProductTest => {
                read_kind::<ProductTestRecord>(&ctx, *kind, &files, &mut msgs).await?
            }
            EventKind::Inspection => {
                read_kind::<InspectionFinding>(&ctx, *kind, &files, &mut msgs).await?
            }
        }
    }
    msgs.sort_by(|a, b| a.ms.cmp(&b.ms).then_with(|| a.event_id.cmp(&b.event_id)));
    Ok(msgs)
}

/// Publishes the lake's records. `rate` is messages per second (unbounded when `None`).
pub async fn produce(
    cfg: &StreamConfig,
    lake_dir: &Path,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    rate: Option<f64>,
) -> Result<ProduceSummary> {
    let msgs = read_lake(lake_dir, from, to).await?;
    if msgs.is_empty() {
        return Err(CoreError::Lake {
            path: lake_dir.to_path_buf(),
            reason: "no event records in the chosen days".into(),
        }
        .into());
    }
    let failed = Arc::new(AtomicU64::new(0));
    let ctx = Ctx {
        failed: failed.clone(),
        first_error: std::sync::Mutex::new(None),
    };
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in &cfg.kafka {
        c.set(k, v);
    }
    let producer: BaseProducer<Ctx> =
        c.create_with_context(ctx).map_err(|e| StreamError::Kafka {
            context: format!("producer for {}", cfg.brokers),
            reason: e.to_string(),
        })?;
    producer
        .client()
        .fetch_metadata(None, Duration::from_secs(cfg.startup_timeout_secs.max(1)))
        .map_err(|e| StreamError::Kafka {
            context: format!("brokers {}", cfg.brokers),
            reason: format!("cannot reach the broker: {e}"),
        })?;
    let topics: Vec<String> = EventKind::ALL.iter().map(|k| cfg.topic(*k)).collect();
    let mut per_topic = vec![0u64; EventKind::ALL.len()];
    let started = Instant::now();
    tokio::task::block_in_place(|| -> Result<()> {
        for (i, m) in msgs.iter().enumerate() {
            if let Some(r) = rate {
                let due = Duration::from_secs_f64(i as f64 / r.max(1e-9));
                let now = started.elapsed();
                if due > now {
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(due - now);
                }
            }
            let ki = EventKind::ALL
                .iter()
                .position(|k| *k == m.kind)
                .unwrap_or(0);
            let mut rec = BaseRecord::to(&topics[ki]).key(&m.key).payload(&m.payload);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        return Err(StreamError::Kafka {
                            context: format!("produce to {}", topics[ki]),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            per_topic[ki] += 1;
            if i % 1024 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .map_err(|e| StreamError::Kafka {
                context: "flush".into(),
                reason: e.to_string(),
            })
    })?;
    let f = failed.load(Ordering::Relaxed);
    if f > 0 {
        let first = producer
            .context()
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        return Err(StreamError::Kafka {
            context: format!("produce to {}", cfg.brokers),
            reason: format!("{f} message(s) were not delivered; first error: {first}"),
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent = msgs.len() as u64;
    Ok(ProduceSummary {
        per_topic: topics
            .into_iter()
            .zip(per_topic)
            .filter(|(_, n)| *n > 0)
            .collect(),
        sent,
        seconds,
        rate: sent as f64 / seconds.max(1e-9),
    })
}
