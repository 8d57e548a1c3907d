//! The windows' deltas: what a micro-batch adds to each enterprise × product × day window,
//! computed by `sql/stream/window_delta.sql` with DataFusion over the batch's lake batches
//! (the same SQL the nightly job's windows follow), merged into the partition state; and the
//! closing of days the watermark has passed.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::Result;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::fasthash::FastMap;
use pharmwatch_core::indicators::{dates, floats, strings};
use pharmwatch_core::lake::rows_to_batch;
use pharmwatch_core::query::run_sql;
use pharmwatch_schemas::records::LakeRow;
use pharmwatch_schemas::{EventKind, biz_date};

use super::record::{Accepted, Record, Source};
use super::state::PartitionState;
use super::{BatchOutcome, Engine, day_end_ms, state_of};

/// One row of `window_delta.sql`: what a micro-batch adds to one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    enterprise_id: String,
    product_id: String,
    biz_date: NaiveDate,
    sold: i64,
    retail: f64,
    inflow: i64,
    closing: Option<i64>,
}

/// The lake batch (wire fields + `biz_date`) of accepted records of one kind; records of
/// other kinds are ignored. Built once per file and reused for the window deltas.
pub fn lake_batch(kind: EventKind, recs: &[&Accepted]) -> Result<RecordBatch> {
    macro_rules! rows {
        ($variant:ident) => {{
            let rows: Vec<LakeRow<'_, _>> = recs
                .iter()
                .filter_map(|a| match &a.record {
                    Record::$variant(r) => Some(LakeRow {
                        record: r,
                        biz_date: biz_date(&r.event_time),
                    }),
                    _ => None,
                })
                .collect();
            Ok(rows_to_batch(kind.lake_schema(), &rows, kind.as_str())?)
        }};
    }
    match kind {
        EventKind::Production => rows!(Production),
        EventKind::Sales => rows!(Sales),
        EventKind::Purchase => rows!(Purchase),
        EventKind::Inventory => rows!(Inventory),
        EventKind::ProductTest => rows!(ProductTest),
        EventKind::Inspection => rows!(Inspection),
    }
}

const WINDOW_DELTA_SQL: &str = include_str!("../../../sql/stream/window_delta.sql");

/// The window deltas of a micro-batch: `window_delta.sql` through DataFusion over the batch's
/// lake batches (per kind), one row per enterprise × product × business day it touches.
pub async fn window_deltas(lake: &HashMap<EventKind, Vec<RecordBatch>>) -> Result<Vec<Delta>> {
    if lake.values().all(|b| b.is_empty()) {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    for kind in [
        EventKind::Sales,
        EventKind::Purchase,
        EventKind::Production,
        EventKind::Inventory,
    ] {
        let batches = lake.get(&kind).cloned().unwrap_or_default();
        let t = MemTable::try_new(kind.lake_schema(), vec![batches])
            .map_err(|e| CoreError::query("window_delta.sql", e))?;
        ctx.register_table(kind.as_str(), Arc::new(t))
            .map_err(|e| CoreError::query("window_delta.sql", e))?;
    }
    let out = run_sql(&ctx, "window_delta.sql", WINDOW_DELTA_SQL).await?;
    let mut rows = Vec::new();
    let q = "window_delta.sql";
    for b in &out {
        let ent = strings(q, b, "enterprise_id")?;
        let prod = strings(q, b, "product_id")?;
        let day = dates(q, b, "biz_date")?;
        let closing = b.column(6).as_primitive::<Int64Type>();
        let sold = floats(q, b, "sold")?;
        let retail = floats(q, b, "retail")?;
        let inflow = floats(q, b, "inflow")?;
        for i in 0..b.num_rows() {
            rows.push(Delta {
                enterprise_id: ent[i].clone().unwrap_or_default(),
                product_id: prod[i].clone().unwrap_or_default(),
                biz_date: day[i],
                sold: sold[i] as i64,
                retail: retail[i],
                inflow: inflow[i] as i64,
                closing: (!closing.is_null(i)).then(|| closing.value(i)),
            });
        }
    }
    Ok(rows)
}

impl Engine {
    /// Merges the batch's window deltas (through DataFusion) into the windows, records the
    /// enterprise-days that reported inventory, and fires the special-drug surge of a window
    /// whose retail grew.
    pub(super) fn merge_deltas(
        &self,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        deltas: impl FnOnce() -> Result<Vec<Delta>>,
        out: &mut BatchOutcome,
    ) -> Result<()> {
        // The last record of the batch per window, borrowed from the batch (no key copies);
        // built while the second thread may still be computing the deltas.
        let mut last_source: FastMap<(&str, &str, NaiveDate), (&Source, DateTime<FixedOffset>)> =
            FastMap::default();
        for a in batch {
            let (ent, prod) = match &a.record {
                Record::Sales(r) => (&r.enterprise_id, &r.product_id),
                Record::Purchase(r) => (&r.enterprise_id, &r.product_id),
                Record::Production(r) => (&r.enterprise_id, &r.product_id),
                Record::Inventory(r) => (&r.enterprise_id, &r.product_id),
                _ => continue,
            };
            let et = *a.record.event_time();
            if let Record::Inventory(_) = &a.record {
                let st = state_of(states, a.source.partition)?;
                let rk = (ent.clone(), biz_date(&et));
                if st.reported.insert(rk.clone()) {
                    st.new_reported.push(rk);
                }
            }
            last_source.insert(
                (ent.as_str(), prod.as_str(), biz_date(&et)),
                (&a.source, et),
            );
        }
        let deltas = deltas()?;
        for d in deltas {
            let Some(&(source, et)) =
                last_source.get(&(d.enterprise_id.as_str(), d.product_id.as_str(), d.biz_date))
            else {
                continue;
            };
            let key = (d.enterprise_id, d.product_id, d.biz_date);
            let st = state_of(states, source.partition)?;
            let (w, key) = st.window_mut(key);
            w.sold += d.sold;
            w.retail += d.retail;
            w.inflow += d.inflow;
            if let Some(c) = d.closing {
                w.closing = Some(w.closing.unwrap_or(0) + c);
            }
            if d.retail > 0.0 {
                st.retail_days
                    .entry(key.0.clone())
                    .or_default()
                    .insert(key.2);
                if let Some(hit) = self.surge(st, &key) {
                    st.window_mut(key.clone()).0.surge_fired = true;
                    out.events.push(self.event(hit, "", source, et));
                }
            }
        }
        Ok(())
    }

    /// Closes the days the settled watermark has passed, reconciling each (`sold_not_bought`,
    /// `inventory_mismatch`), and prunes what the windows no longer need.
    pub(super) fn close_days(
        &self,
        states: &mut HashMap<i32, PartitionState>,
        holding: &dyn Fn(EventKind, i32) -> bool,
        out: &mut BatchOutcome,
    ) -> Result<()> {
        let now = std::time::Instant::now();
        for (p, st) in states.iter_mut() {
            let p = *p;
            let Some(wm) = st.watermark(&|k| holding(k, p)) else {
                continue;
            };
            // A day closes at a watermark observed a grace ago that the batch's still passes.
            st.settling.observe(wm, now);
            let Some(settled) = st.settling.settled(now, self.close_grace) else {
                continue;
            };
            let wm = wm.min(settled);
            while let Some(c) = st.meta.closed_through {
                let d = c + Duration::days(1);
                if day_end_ms(d).saturating_add(self.lateness_ms) > wm {
                    break;
                }
                let source = Source {
                    topic: "close".into(),
                    partition: p,
                    offset: -1,
                };
                for hit in self.reconcile(st, d) {
                    let et = DateTime::from_timestamp_millis(day_end_ms(d))
                        .map(|t| t.with_timezone(&pharmwatch_schemas::shanghai()))
                        .ok_or_else(|| CoreError::Internal("day end out of range".into()))?;
                    out.events.push(self.event(hit, "", &source, et));
                }
                st.meta.closed_through = Some(d);
                st.prune();
            }
        }
        Ok(())
    }
}
