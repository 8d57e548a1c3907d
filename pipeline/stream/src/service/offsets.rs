//! Where each topic-partition stands: the store's next offsets (the truth), resuming from
//! them after an assignment ([`Resume`]: a broker that answers from the middle of a record
//! batch is read again from further back), the lake files of an unfinished batch removed when
//! a partition is loaded, the offsets committed to Kafka (advisory), and what the high
//! watermarks say about lag and about which partitions still hold unread records.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::error::Result;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::remote_lake::LakeSource;
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::EventKind;

use super::Service;
use super::consumer::Reb;
use crate::config::StreamConfig;
use crate::engine::{PartitionState, Seen, SeenKey};
use chrono::NaiveDate;
use pharmwatch_core::fasthash::FastMap;

/// A topic-partition resuming from the store's offset: until its first message at or before
/// `next` arrives, a later first message means the broker skipped records (some brokers
/// answer a fetch from the middle of a record batch with the next batch), so the consumer
/// rewinds (`from` is the offset it last asked for) and skips what the store already holds.
///
/// The same broker answers a fetch from the middle of the *last* record batch with nothing
/// at all, so a resume that sees no message while the partition holds more than `next` is
/// rewound as well (`since` is when the position was last set).
#[derive(Debug, Clone, Copy)]
pub(super) struct Resume {
    pub(super) next: i64,
    pub(super) from: i64,
    pub(super) since: Instant,
}

impl Resume {
    pub(super) fn at(next: i64) -> Self {
        Resume {
            next,
            from: next,
            since: Instant::now(),
        }
    }

    /// The position to rewind to next: further back each time, down to the start.
    pub(super) fn further_back(&self) -> Resume {
        let back = (self.next - self.from).max(512) * 4;
        Resume {
            next: self.next,
            from: (self.next - back).max(0),
            since: Instant::now(),
        }
    }
}

/// How long a resuming topic-partition may stay silent while the broker holds more.
pub(super) const RESUME_STALL: Duration = Duration::from_secs(3);

/// Deletes lake files of partition `p` that the store never committed (first offset at or
/// above the store's next offset for their topic), in a folder or a bucket alike.
pub(super) async fn remove_uncommitted(
    lake: &LakeSource,
    cfg: &StreamConfig,
    st: &PartitionState,
) -> Result<usize> {
    let prefix = format!("stream-p{:03}-o", st.partition);
    let mut removed = 0;
    for kind in EventKind::ALL {
        let next = st.offsets.get(&cfg.topic(*kind)).copied().unwrap_or(0);
        for rel in lake.files_under(kind.as_str()).await? {
            let name = rel.rsplit('/').next().unwrap_or_default();
            let Some(off) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.split('.').next())
                .and_then(|o| o.parse::<i64>().ok())
            else {
                continue;
            };
            if off >= next {
                lake.remove(&rel).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The event ids in partition `st`'s committed lake files of its open days (after its last
/// closed day): what it has accepted, for the check that an event id is accepted once across
/// restarts and rebalances. Run after [`remove_uncommitted`].
pub(super) async fn seen_in_lake(
    lake: &LakeSource,
    st: &PartitionState,
) -> Result<FastMap<SeenKey, Seen>> {
    let prefix = format!("stream-p{:03}-o", st.partition);
    let mut seen = FastMap::default();
    for kind in EventKind::ALL {
        for rel in lake.files_under(kind.as_str()).await? {
            let mut parts = rel.rsplit('/');
            let name = parts.next().unwrap_or_default();
            if !name.starts_with(&prefix) || !name.ends_with(".parquet") {
                continue;
            }
            let Some(day) = parts
                .next()
                .and_then(|d| d.strip_prefix("date="))
                .and_then(|d| d.parse::<NaiveDate>().ok())
            else {
                continue;
            };
            if st.meta.closed_through.is_some_and(|c| day <= c) {
                continue;
            }
            for id in event_ids(&rel, lake.read(&rel).await?)? {
                seen.insert(
                    Seen::key(*kind, &id),
                    Seen {
                        day,
                        offset: None,
                        digest: None,
                        batch: 0,
                    },
                );
            }
        }
    }
    Ok(seen)
}

/// The `event_id` column of a Parquet file's bytes.
fn event_ids(rel: &str, bytes: Vec<u8>) -> Result<Vec<String>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |what: String| CoreError::Lake {
        path: rel.into(),
        reason: format!("reading its event ids: {what}"),
    };
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| bad(e.to_string()))?;
    let idx = b
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "event_id")
        .ok_or_else(|| bad("no event_id column".into()))?;
    let mask = ProjectionMask::leaves(b.parquet_schema(), [idx]);
    let reader = b
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let col = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| bad(e.to_string()))?;
        let s = col.as_string::<i32>();
        out.extend(
            (0..s.len())
                .filter(|i| s.is_valid(*i))
                .map(|i| s.value(i).to_string()),
        );
    }
    Ok(out)
}

impl Service {
    /// The next offset the store holds for a topic-partition (0 when never read).
    pub(super) fn next_offset(&self, topic: &str, p: i32) -> i64 {
        self.states
            .get(&p)
            .and_then(|s| s.offsets.get(topic))
            .copied()
            .unwrap_or(0)
    }

    /// The high watermarks known now (from statistics or a fresh broker query).
    pub(super) fn high_snapshot(&self) -> HashMap<(String, i32), i64> {
        self.consumer
            .context()
            .high
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    pub(super) fn holding(&self) -> impl Fn(EventKind, i32) -> bool + '_ {
        let high = self.high_snapshot();
        move |k: EventKind, p: i32| {
            let topic = self.cfg.topic(k);
            let next = self.next_offset(&topic, p);
            match high.get(&(topic, p)) {
                Some(h) => next < *h,
                None => true,
            }
        }
    }

    pub(super) fn apply_rebalances(&mut self) -> Result<()> {
        let events: Vec<Reb> = match self.consumer.context().rebalances.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return Err(CoreError::Internal("rebalance lock poisoned".into()).into()),
        };
        for ev in events {
            match ev {
                Reb::Assign(list) => {
                    self.assigned_at = Instant::now();
                    tracing::info!(
                        partitions = %list
                            .iter()
                            .map(|(t, p)| format!("{t}[{p}]"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        "assigned"
                    );
                    self.assigned.extend(list);
                }
                Reb::Revoke(list) => {
                    for tp in &list {
                        self.assigned.remove(tp);
                        self.resume.remove(tp);
                    }
                    let keep: HashSet<i32> = self.assigned.iter().map(|(_, p)| *p).collect();
                    self.states.retain(|p, _| keep.contains(p));
                    tracing::info!(topic_partitions = list.len(), "revoked");
                }
            }
        }
        let parts: HashSet<i32> = self.assigned.iter().map(|(_, p)| *p).collect();
        let missing: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.states.contains_key(p))
            .collect();
        if !missing.is_empty() {
            let path = self.store.path().to_path_buf();
            let tx = self
                .store
                .conn()
                .transaction_with_behavior(pharmwatch_core::db::TransactionBehavior::Immediate)
                .map_err(|e| sql_err(&path, "begin", e))?;
            for p in missing {
                let mut st = PartitionState::load(&tx, &path, p)?;
                let removed = self
                    .rt
                    .block_on(remove_uncommitted(&self.lake, &self.cfg, &st))?;
                st.seen = self.rt.block_on(seen_in_lake(&self.lake, &st))?;
                if removed > 0 {
                    tracing::info!(
                        partition = p,
                        removed,
                        "removed the lake files of an unfinished batch"
                    );
                }
                for (topic, next) in &st.offsets {
                    if *next > 0 {
                        self.resume.insert((topic.clone(), p), Resume::at(*next));
                    }
                }
                self.states.insert(p, st);
            }
            tx.commit().map_err(|e| sql_err(&path, "commit", e))?;
        }
        let mut ps: Vec<i32> = parts.into_iter().collect();
        ps.sort_unstable();
        self.metrics.assigned_partitions.set(ps.len() as i64);
        if let Ok(mut h) = self.health.lock() {
            h.assigned_partitions = ps;
        }
        Ok(())
    }

    /// The consumer-lag, watermark and state-size gauges, after a batch.
    pub(super) fn update_gauges(&self) {
        let high = self.high_snapshot();
        for (topic, p) in &self.assigned {
            let Some(kind) = self.cfg.kind_of(topic) else {
                continue;
            };
            let next = self.next_offset(topic, *p);
            if let Some(h) = high.get(&(topic.clone(), *p)) {
                self.metrics
                    .consumer_lag
                    .with_label_values(&[kind.as_str(), &p.to_string()])
                    .set((h - next).max(0));
            }
        }
        let holding = self.holding();
        // Every part, at zero when the instance holds no partition (after a revocation).
        let mut entries: std::collections::BTreeMap<&str, usize> = PartitionState::default()
            .entries()
            .into_iter()
            .map(|(part, _)| (part, 0))
            .collect();
        for st in self.states.values() {
            for (part, n) in st.entries() {
                *entries.entry(part).or_default() += n;
            }
        }
        for (part, n) in entries {
            self.metrics
                .state_entries
                .with_label_values(&[part])
                .set(n as i64);
        }
        for (p, st) in &self.states {
            if let Some(wm) = st.watermark(&|k| holding(k, *p)) {
                self.metrics
                    .watermark
                    .with_label_values(&[&p.to_string()])
                    .set(wm as f64 / 1000.0);
            }
        }
    }

    pub(super) fn commit_offsets(&self) {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &self.assigned {
            if let Some(next) = self.states.get(p).and_then(|s| s.offsets.get(topic)) {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "offset commit failed; the store holds the offsets");
        }
    }

    /// Rewinds resuming topic-partitions that stayed silent although the broker holds
    /// messages past the store's offset (see [`Resume`]). A failed seek is retried later.
    pub(super) fn rewind_stalled(&mut self) {
        if self.broker_down() {
            return;
        }
        let stats = self.high_snapshot();
        let due: Vec<((String, i32), Resume)> = self
            .resume
            .iter()
            .filter(|(_, r)| r.since.elapsed() >= RESUME_STALL)
            .map(|(tp, r)| (tp.clone(), *r))
            .collect();
        let mut stalled = Vec::new();
        for (tp, r) in due {
            // The statistics may not know a partition that never answered a fetch: ask.
            let high = match stats.get(&tp) {
                Some(h) => Some(*h),
                None => self
                    .producer
                    .client()
                    .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5))
                    .ok()
                    .map(|(_, h)| h),
            };
            if high.is_some_and(|h| h > r.next) {
                stalled.push((tp, r));
            } else {
                self.resume.insert(
                    tp,
                    Resume {
                        since: Instant::now(),
                        ..r
                    },
                );
            }
        }
        for ((topic, p), r) in stalled {
            let back = r.further_back();
            if back.from == r.from {
                // Already reading from the start: asking again would only restart a fetch a
                // slow broker (one reloading its log after a restart) has not answered yet.
                self.resume.insert((topic, p), back);
                continue;
            }
            let sought = self.consumer.seek(
                &topic,
                p,
                Offset::Offset(back.from),
                Duration::from_secs(10),
            );
            let next = match sought {
                Ok(()) => {
                    tracing::info!(
                        topic,
                        partition = p,
                        offset = r.next,
                        from = back.from,
                        "nothing arrived from the store's offset; reading again from further back"
                    );
                    self.sought.insert((topic.clone(), p));
                    back
                }
                Err(e) => {
                    tracing::warn!(
                        topic,
                        partition = p,
                        offset = back.from,
                        error = %e,
                        "seek failed; will retry"
                    );
                    Resume {
                        since: Instant::now(),
                        ..r
                    }
                }
            };
            self.resume.insert((topic, p), next);
        }
    }

    /// Logs where each lagging topic-partition stands (for an operator, when the service
    /// makes no progress although the broker holds unread messages).
    pub(super) fn log_stall(&self) {
        let high = self.high_snapshot();
        let mut parts = Vec::new();
        for (topic, p) in &self.assigned {
            let next = self.next_offset(topic, *p);
            let h = high.get(&(topic.clone(), *p)).copied();
            if h.is_none_or(|h| h > next) {
                let resume = self
                    .resume
                    .get(&(topic.clone(), *p))
                    .map(|r| format!(", re-reading from {}", r.from))
                    .unwrap_or_default();
                parts.push(format!(
                    "{topic}[{p}] at {next} of {}{resume}",
                    h.map_or("?".to_string(), |h| h.to_string())
                ));
            }
        }
        if !parts.is_empty() {
            parts.sort();
            tracing::warn!(lagging = %parts.join("; "), "no progress for 30 s");
        }
    }

    pub(super) fn high_known(&self) -> bool {
        let Ok(high) = self.consumer.context().high.lock() else {
            return false;
        };
        self.assigned.iter().all(|tp| high.contains_key(tp))
    }

    pub(super) fn all_read(&self) -> bool {
        let h = self.holding();
        !self.assigned.is_empty()
            && self
                .assigned
                .iter()
                .all(|(t, p)| self.cfg.kind_of(t).is_none_or(|k| !h(k, *p)))
    }
}
