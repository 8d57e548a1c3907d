//! The stream's judging engine: decoded micro-batches in, window state and risk events out.
//! Modules: `record` (decoded records and the reference tables), `state` (a partition's
//! windows and metadata, loaded and saved), `rules` (the record rules and the day close),
//! `windows` (the DataFusion window deltas).
//! Independent of Kafka (the service feeds it), so it is tested on batches built in memory.
//!
//! State is per partition number (the same partition of every event topic: topics are keyed by
//! enterprise credit code and co-partitioned, so one partition holds everything one enterprise
//! reports). A partition's state is its windows per enterprise × product × business day (sold,
//! retail, inflow, closing stock), the enterprise-days that reported inventory, the batches it
//! sold, its event-time maxima per topic and the last closed business day. Batch deltas come
//! from `sql/stream/window_delta.sql` run by DataFusion over the micro-batch and are added to
//! the windows, so a day is never rescanned. Traceability codes and failed batches are shared
//! by all partitions (tables in the store).
//!
//! Signals and when they fire:
//! - `expired_batch_sold`, `failed_batch_sold`: at the sale (or, for a sale that reached the
//!   stream before the failing test result of its partition, when the result arrives);
//! - `trace_code_duplicate`: at the second sale of a code, whichever partition saw the first;
//!   the earliest sale (by event time, then event id) is the original, whatever the arrival
//!   order, so every other sale is flagged exactly as in `trace_duplicate.sql`;
//! - `special_drug_volume`: as soon as the day's cumulative retail quantity crosses the rule of
//!   `retail_spike.sql` against the 28-day baseline (nightly history plus stream days);
//! - `sold_not_bought`, `inventory_mismatch`: when the business day closes, i.e. the
//!   partition's watermark is `allowed_lateness` past the day's end and still was after a
//!   grace of this machine's time ([`settle`]), with the rule of `inventory.sql`.
//!
//! Watermark of a partition: the smallest event-time maximum over its topics that still have
//! unread messages or messages in the batch in hand (a topic read to its end does not hold the
//! watermark back; when all are at their end, the largest maximum). A record older than
//! watermark − lateness, or of a day already closed, is late: it is landed and counted, windows
//! take it, but a closed day is not judged again. Nor does the nightly risk list judge it
//! again: its late records enter the look-back baselines of the days after it (and, when the
//! model is trained, the day's hits are recomputed to keep flagged days out of its training),
//! but the risk list holds the hits of the run's own days only.
//!
//! Invariants: every event has a deterministic id (`RE-<day>-<hash of indicator, enterprise,
//! product, day[, batch]>`), the same whatever the batch boundaries, partition owner or
//! restart; the granularity is the nightly item's, so the stream and the nightly job flag the
//! same enterprise × product × day.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use pharmwatch_core::db::Transaction;

use crate::error::Result;
use pharmwatch_core::baseline::Baseline;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::indicators::{Hit, RULE_VERSION, Thresholds};
use pharmwatch_core::risk;
use pharmwatch_schemas::{EventKind, biz_date};

mod record;
mod rules;
pub mod settle;
mod state;
mod windows;

pub use record::{Accepted, Record, Reference, Rejected, RiskEvent, Source, decode};
pub use rules::{SweptSlice, TraceSweep, TraceSweeper};
pub(crate) use rules::{TRACE_CODES_REPLACE, TraceCodeRows};
pub use state::{PartitionMeta, PartitionState, Seen, SeenKey, Window};
pub use windows::{Delta, lake_batch, window_deltas};

use state::date_str;

/// Outcome of one micro-batch for the service.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Risk events (new or not: the store keeps each id once).
    pub events: Vec<RiskEvent>,
    /// Accepted records later than the allowed lateness, per (topic, partition).
    pub late: HashMap<(String, i32), u64>,
    /// Seconds spent per step (`rules`: tests, sales and trace codes record by record;
    /// `windows`: the DataFusion deltas merged into the windows; `close`: days closed).
    pub steps: Vec<(&'static str, f64)>,
}

/// The engine: reference data, baseline and thresholds.
#[derive(Debug)]
pub struct Engine {
    /// Reference data.
    pub reference: Reference,
    /// The nightly baseline.
    pub baseline: Baseline,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Allowed lateness, milliseconds.
    pub lateness_ms: i64,
    /// How long a watermark settles before a day closes at it (see [`settle`]).
    pub close_grace: std::time::Duration,
}

/// The end of business day `d` (midnight Asia/Shanghai after it), epoch milliseconds.
pub(super) fn day_end_ms(d: NaiveDate) -> i64 {
    let next = d + Duration::days(1);
    next.and_hms_opt(0, 0, 0)
        .map(|t| {
            t.and_utc().timestamp_millis()
                - i64::from(pharmwatch_schemas::SHANGHAI_OFFSET_SECONDS) * 1000
        })
        .unwrap_or(i64::MAX)
}

/// FNV-1a, 64 bits: a hash that is the same on every platform and release.
fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The deterministic id of a risk event.
pub fn event_id(
    indicator: &str,
    ent: &str,
    product: Option<&str>,
    day: NaiveDate,
    extra: &str,
) -> String {
    let d = date_str(day);
    format!(
        "RE-{}-{:016x}",
        day.format("%Y%m%d"),
        fnv64(&[indicator, ent, product.unwrap_or(""), &d, extra])
    )
}

/// The state of partition `p`: every partition the batch names was loaded before it.
pub(super) fn state_of(
    states: &mut HashMap<i32, PartitionState>,
    p: i32,
) -> Result<&mut PartitionState> {
    Ok(states
        .get_mut(&p)
        .ok_or_else(|| CoreError::Internal(format!("no state for partition {p}")))?)
}

impl Engine {
    /// Whether partition state `st` would close a business day at watermark `wm`.
    pub fn would_close(&self, st: &PartitionState, wm: Option<i64>, now: Instant) -> bool {
        // With a grace, the batch's watermark is not observed yet: the close waits for one
        // observed a grace ago.
        let wm = if self.close_grace.is_zero() {
            wm
        } else {
            wm.zip(st.settling.peek(now, self.close_grace))
                .map(|(a, b)| a.min(b))
        };
        match (st.meta.closed_through, wm) {
            (Some(c), Some(wm)) => {
                day_end_ms(c + Duration::days(1)).saturating_add(self.lateness_ms) <= wm
            }
            _ => false,
        }
    }

    /// Whether no partition has a watermark still waiting out its grace (a day may close
    /// once it has).
    pub fn settled(&self, states: &HashMap<i32, PartitionState>, now: Instant) -> bool {
        states
            .values()
            .all(|st| st.settling.is_settled(now, self.close_grace))
    }

    pub(super) fn event(
        &self,
        hit: Hit,
        extra: &str,
        source: &Source,
        event_time: DateTime<FixedOffset>,
    ) -> RiskEvent {
        let e = self.reference.enterprises.get(&hit.enterprise_id);
        // The effective credit grade of the event's day: the reference grade lowered by the
        // credit-file entries public that day (carried by the nightly baseline).
        let reference = e.map(|e| e.credit_grade.as_str()).unwrap_or("B");
        let credit = self
            .baseline
            .effective_credit(&hit.enterprise_id, reference, hit.date);
        let (score, grade) = risk::single_item_score(&hit.indicator, &credit);
        RiskEvent {
            id: event_id(
                &hit.indicator,
                &hit.enterprise_id,
                hit.product_id.as_deref(),
                hit.date,
                extra,
            ),
            indicator: hit.indicator.clone(),
            enterprise_id: hit.enterprise_id.clone(),
            enterprise_name: e.map(|e| e.name.clone()).unwrap_or_default(),
            region_code: e.map(|e| e.region_code.clone()).unwrap_or_default(),
            product_id: hit.product_id.clone(),
            biz_date: hit.date,
            event_time,
            detected_at: Utc::now(),
            source: source.clone(),
            source_timestamp_ms: None,
            score,
            grade: grade.to_string(),
            rule_version: RULE_VERSION.to_string(),
            item: risk::item(&hit, &self.reference.products),
        }
    }

    /// Judges one micro-batch of accepted records for the partitions in `states`, updating
    /// their windows and metadata and the shared tables through `tx`. `holding(kind, p)` says
    /// whether partition `p` of `kind`'s topic still has unread messages. `deltas` gives the
    /// batch's window deltas ([`window_deltas`] over its lake batches); it is called once the
    /// record-by-record rules are done, so the caller can compute them on another thread
    /// meanwhile.
    ///
    /// Steps: advance each partition's event-time maxima and offsets (counting what is late
    /// against the watermark before the batch); the rules record by record (failing tests
    /// first, then sales and traceability codes); the window deltas merged into the windows
    /// (the special-drug surge); the days the watermark has passed closed and reconciled.
    pub fn process(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        deltas: impl FnOnce() -> Result<Vec<Delta>>,
        holding: &dyn Fn(EventKind, i32) -> bool,
    ) -> Result<BatchOutcome> {
        let mut out = BatchOutcome::default();
        let mut mark = std::time::Instant::now();
        let mut step = |out: &mut BatchOutcome, name: &'static str| {
            out.steps.push((name, mark.elapsed().as_secs_f64()));
            mark = std::time::Instant::now();
        };
        self.advance(states, batch, holding, &mut out)?;
        // Failing test results first, so a sale in the same batch sees them.
        let mut known = self.known(tx, path, batch)?;
        self.apply_failed_tests(tx, path, &mut known, states, batch, &mut out)?;
        self.judge_sales(tx, path, &known, states, batch, &mut out)?;
        step(&mut out, "rules");
        self.merge_deltas(states, batch, deltas, &mut out)?;
        step(&mut out, "windows");
        self.close_days(states, holding, &mut out)?;
        step(&mut out, "close");
        Ok(out)
    }

    /// Advances each partition's event-time maximum per kind, first closed day and next
    /// offsets over the batch; counts the records later than the allowed lateness, judged
    /// against the watermark before this batch.
    fn advance(
        &self,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        holding: &dyn Fn(EventKind, i32) -> bool,
        out: &mut BatchOutcome,
    ) -> Result<()> {
        let mut wm_before: HashMap<i32, Option<i64>> = HashMap::new();
        for (p, st) in states.iter() {
            let p = *p;
            wm_before.insert(p, st.watermark(&|k| holding(k, p)));
        }
        for a in batch {
            let p = a.source.partition;
            let st = state_of(states, p)?;
            let ms = a.record.event_time().timestamp_millis();
            // Late: behind the watermark by more than the allowed lateness, or of a day
            // already closed (reconciled without it).
            let behind = matches!(wm_before.get(&p), Some(Some(wm)) if ms < wm - self.lateness_ms);
            if behind
                || st
                    .meta
                    .closed_through
                    .is_some_and(|c| biz_date(a.record.event_time()) <= c)
            {
                *out.late.entry((a.source.topic.clone(), p)).or_default() += 1;
            }
            // Looked up before inserting: no key copies per record.
            let k = a.record.kind().as_str();
            match st.meta.max_event_ms.get_mut(k) {
                Some(m) => *m = (*m).max(ms),
                None => {
                    st.meta.max_event_ms.insert(k.to_string(), ms);
                }
            }
            if st.meta.closed_through.is_none() {
                st.meta.closed_through = Some(match self.baseline.to {
                    Some(t) => t,
                    None => biz_date(a.record.event_time()) - Duration::days(1),
                });
            }
            match st.offsets.get_mut(&a.source.topic) {
                Some(next) => *next = (*next).max(a.source.offset + 1),
                None => {
                    st.offsets
                        .insert(a.source.topic.clone(), a.source.offset + 1);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharmwatch_core::baseline::CreditStep;

    /// A risk event is scored with the effective credit grade of its day: the reference grade
    /// lowered by the credit-file entries the nightly baseline carries, while they count.
    #[test]
    fn events_score_with_the_effective_credit_grade_of_their_day() {
        let ent = "91110000600037341L";
        let mut baseline = Baseline::default();
        baseline.credit.insert(
            ent.to_string(),
            vec![CreditStep {
                from: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
                until: NaiveDate::from_ymd_opt(2027, 3, 1).unwrap(),
                steps: 1,
                reason: "caution of case X".into(),
            }],
        );
        let engine = Engine {
            reference: Reference::default(),
            baseline,
            thresholds: Thresholds::default(),
            lateness_ms: 0,
            close_grace: std::time::Duration::ZERO,
        };
        let hit = |day: &str| Hit {
            enterprise_id: ent.to_string(),
            product_id: None,
            date: day.parse().unwrap(),
            indicator: "sold_not_bought".into(),
            window_start: day.parse().unwrap(),
            window_end: day.parse().unwrap(),
            observed: 10.0,
            expected: 0.0,
            detail: String::new(),
        };
        let source = Source {
            topic: "sales".into(),
            partition: 0,
            offset: 1,
        };
        let at = DateTime::parse_from_rfc3339("2026-06-01T10:00:00+08:00").unwrap();
        // Unknown to the reference table: grade B, lowered to C while the caution counts.
        let during = engine.event(hit("2026-06-01"), "", &source, at);
        let after = engine.event(hit("2027-03-02"), "", &source, at);
        let (c, _) = risk::single_item_score("sold_not_bought", "C");
        let (b, _) = risk::single_item_score("sold_not_bought", "B");
        assert!(c > b);
        assert_eq!(during.score, c);
        assert_eq!(after.score, b, "the entry stopped counting");
        assert_eq!(
            engine
                .baseline
                .effective_credit(ent, "A", "2026-03-02".parse().unwrap()),
            "B"
        );
        assert_eq!(
            engine
                .baseline
                .effective_credit("other", "A", "2026-06-01".parse().unwrap()),
            "A"
        );
    }
}
