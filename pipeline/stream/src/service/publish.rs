//! Step 3 of a micro-batch: the outbox rows the store transaction wrote are published (risk
//! events to the risk-events topic keyed by event id, dead letters to the dead-letter topic
//! keyed by `topic/partition/offset`), then marked sent. At least once, with stable keys.
//!
//! A batch waits at most [`PUBLISH_WAIT`] for the deliveries: a broker lost at that moment (its
//! loss not yet in librdkafka's statistics) must not hold the consuming loop — and `/healthz`,
//! which the loop updates — for the producer's whole delivery timeout. What is not delivered
//! by then is taken back from the producer's queue and stays in the outbox for the next batch.

use std::time::Duration;

use futures::StreamExt as _;

use chrono::Utc;
use pharmwatch_core::db::Value;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer as _};

use crate::error::Result;
use pharmwatch_core::store::sql_err;

use super::Service;

/// The longest a batch waits for its outbox's deliveries.
const PUBLISH_WAIT: Duration = Duration::from_secs(3);

/// An outbox row to publish.
struct Outgoing {
    seq: i64,
    role: String,
    key: String,
    payload: String,
}

impl Service {
    /// Publishes the outbox (risk events and dead letters) and marks what was sent; a
    /// failed send stays in the outbox for the next batch or the next start.
    pub(super) fn publish_outbox(&mut self) -> Result<()> {
        // Without a broker each send would wait out its time limit: the outbox keeps its rows
        // for the first batch after the broker is back.
        if self.broker_down() {
            return Ok(());
        }
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
                let mut sends: futures::stream::FuturesUnordered<_> = pending
                    .iter()
                    .enumerate()
                    .map(|(i, o)| {
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
                        async move { (i, producer.send(rec, Duration::from_secs(30)).await) }
                    })
                    .collect();
                let mut out: Vec<Option<_>> = (0..pending.len()).map(|_| None).collect();
                let deadline = tokio::time::sleep(PUBLISH_WAIT);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        next = sends.next() => match next {
                            Some((i, r)) => out[i] = Some(r),
                            None => break,
                        },
                        () = &mut deadline => break,
                    }
                }
                out
            });
            if results.iter().any(Option::is_none) {
                // Not delivered in time: taken back from the queue (what is in flight may still
                // arrive: a repeat a consumer dedupes by id).
                self.producer
                    .purge(rdkafka::producer::PurgeConfig::default().queue());
            }
            pharmwatch_core::faults::point("stream.after_publish_send");
            let mut sent = Vec::new();
            let mut failure = None;
            for (o, r) in pending.iter().zip(results) {
                match r {
                    Some(Ok(_)) => sent.push(o.seq),
                    Some(Err((e, _))) => failure = Some(e.to_string()),
                    None => {
                        failure = Some(format!("not delivered within {} s", PUBLISH_WAIT.as_secs()))
                    }
                }
            }
            let now = Utc::now().to_rfc3339();
            let conn = self.store.conn();
            let tx = conn.transaction().map_err(|e| sql_err(&path, "begin", e))?;
            let marked = sent.len();
            let sent: Vec<Value> = sent.into_iter().map(Value::Integer).collect();
            tx.update_keyed(
                "outbox",
                "published_at = ?1",
                &[Value::Text(now)],
                "seq",
                &sent,
            )
            .map_err(|e| sql_err(&path, "mark outbox", e))?;
            tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
            if let Some(e) = failure {
                // Left in the outbox: sent on the next batch or at the next start.
                tracing::warn!(error = %e, "publishing to Kafka failed; left in the outbox for the next batch");
                let left = pending.len() - marked;
                self.metrics.outbox_pending.set(left as i64);
                return Ok(());
            }
        }
    }
}
