//! The stream's record rules, judged record by record as a micro-batch arrives: failing
//! tests and the sales of failed, expired or unreleased batches; traceability codes sold twice
//! (the earliest sale is the original, whatever the arrival order); the special-drug surge of a
//! window against its 28-day baseline; and the day-close reconciliation of stock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate};
use pharmwatch_core::db::{Column, Transaction, Value};
use pharmwatch_core::params;

use crate::error::Result;
use pharmwatch_core::fasthash::{FastMap, FastSet};
use pharmwatch_core::indicators::Hit;
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::{SalesRecord, TestResult, biz_date};

use super::record::{Accepted, Record, Source};
use super::state::{PartitionState, WinKey, date_str, parse_date};
use super::{BatchOutcome, Engine, state_of};

/// The store's facts a batch's rules read, looked up for the whole batch at once (a round
/// trip per table on a database server, not per record).
#[derive(Default)]
pub(super) struct Known {
    /// The stored failing day per (product, batch) of the batch's tests and sales.
    failed: FastMap<(String, String), NaiveDate>,
}

/// Rows of `trace_codes` (the first sale of each traceability code), column by column.
#[derive(Default)]
pub(crate) struct TraceCodeRows([Vec<Value>; 6]);

impl TraceCodeRows {
    /// Adds one code with its first sale.
    pub(crate) fn push(
        &mut self,
        code: String,
        event_time_ms: i64,
        event_id: String,
        enterprise_id: String,
        product_id: String,
        day: NaiveDate,
    ) {
        let c = &mut self.0;
        c[0].push(Value::Text(code));
        c[1].push(Value::Integer(event_time_ms));
        c[2].push(Value::Text(event_id));
        c[3].push(Value::Text(enterprise_id));
        c[4].push(Value::Text(product_id));
        c[5].push(Value::Text(date_str(day)));
    }

    /// The columns, named, to write.
    pub(crate) fn columns(self) -> Vec<Column<'static>> {
        [
            "trace_code",
            "event_time_ms",
            "event_id",
            "enterprise_id",
            "product_id",
            "biz_date",
        ]
        .into_iter()
        .zip(self.0)
        .collect()
    }
}

/// The conflict clause that replaces a code's first sale on record (callers add a `WHERE` to
/// keep the earlier one).
pub(crate) const TRACE_CODES_REPLACE: &str =
    "ON CONFLICT (trace_code) DO UPDATE SET event_time_ms = excluded.event_time_ms,
         event_id = excluded.event_id, enterprise_id = excluded.enterprise_id,
         product_id = excluded.product_id, biz_date = excluded.biz_date";

/// The first sale on record of a traceability code.
struct FirstSale {
    ms: i64,
    event_id: String,
    enterprise_id: String,
    product_id: String,
    day: NaiveDate,
    /// Differs from the store (new, or replaced by an earlier sale): written at the end.
    changed: bool,
}

impl FirstSale {
    fn of(s: &SalesRecord) -> Self {
        Self {
            ms: s.event_time.timestamp_millis(),
            event_id: s.event_id.clone(),
            enterprise_id: s.enterprise_id.clone(),
            product_id: s.product_id.clone(),
            day: biz_date(&s.event_time),
            changed: true,
        }
    }
}

impl Engine {
    /// Looks up what the store knows of the batch's (product, batch) pairs.
    pub(super) fn known(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        batch: &[Accepted],
    ) -> Result<Known> {
        let mut keys: FastSet<(&str, &str)> = FastSet::default();
        for a in batch {
            match &a.record {
                Record::Sales(s) => keys.insert((&s.product_id, &s.batch_no)),
                Record::ProductTest(t) if t.result == TestResult::Fail => {
                    keys.insert((&t.product_id, &t.batch_no))
                }
                _ => false,
            };
        }
        let keys: Vec<Vec<Value>> = keys
            .into_iter()
            .map(|(p, b)| vec![Value::Text(p.into()), Value::Text(b.into())])
            .collect();
        let rows = tx
            .select_keyed(
                "SELECT product_id, batch_no, failed_on FROM failed_batches",
                "failed_batches",
                &["product_id", "batch_no"],
                &keys,
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        parse_date(&r.get::<_, String>(2)?)?,
                    ))
                },
            )
            .map_err(|e| sql_err(path, "read failed batches", e))?;
        Ok(Known {
            failed: rows.into_iter().map(|(p, b, d)| ((p, b), d)).collect(),
        })
    }

    /// The day a batch failed its test, from the store or the nightly baseline (the earlier).
    fn failed_on(&self, known: &Known, key: &(String, String)) -> Option<NaiveDate> {
        let stored = known.failed.get(key).copied();
        let base = self.baseline.failed.get(key).copied();
        match (stored, base) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Failing test results: the batch is recorded as failed (earliest day wins), and the sales
    /// of it this partition saw on or after the failing day (and before an earlier known
    /// failure) become `failed_batch_sold` events.
    pub(super) fn apply_failed_tests(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        known: &mut Known,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        out: &mut BatchOutcome,
    ) -> Result<()> {
        for a in batch {
            let Record::ProductTest(t) = &a.record else {
                continue;
            };
            if t.result != TestResult::Fail {
                continue;
            }
            let day = biz_date(&t.event_time);
            let key = (t.product_id.clone(), t.batch_no.clone());
            let before = self.failed_on(known, &key);
            tx.execute(
                "INSERT INTO failed_batches (product_id, batch_no, failed_on) VALUES (?1, ?2, ?3)
                 ON CONFLICT (product_id, batch_no) DO UPDATE SET failed_on = CASE
                     WHEN excluded.failed_on < failed_batches.failed_on THEN excluded.failed_on
                     ELSE failed_batches.failed_on END",
                params![t.product_id, t.batch_no, date_str(day)],
            )
            .map_err(|e| sql_err(path, "record failed batch", e))?;
            let stored = known.failed.entry(key.clone()).or_insert(day);
            *stored = (*stored).min(day);
            if before.is_some_and(|b| b <= day) {
                continue;
            }
            // Sales of the batch this partition saw on or after the failing day.
            let st = state_of(states, a.source.partition)?;
            let mut per_day: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
            let from_failing_day = (day, String::new())..;
            for ((d, ent), q) in st
                .batch_sales
                .get(&key)
                .into_iter()
                .flat_map(|sales| sales.range(from_failing_day.clone()))
            {
                if before.is_none_or(|b| *d < b) {
                    *per_day.entry((ent.clone(), *d)).or_default() += q;
                }
            }
            for ((ent, d), q) in per_day {
                let hit = Hit {
                    enterprise_id: ent,
                    product_id: Some(t.product_id.clone()),
                    date: d,
                    indicator: "failed_batch_sold".into(),
                    window_start: day,
                    window_end: d,
                    observed: q as f64,
                    expected: 0.0,
                    detail: format!("batch={};failed_on={}", t.batch_no, date_str(day)),
                };
                out.events
                    .push(self.event(hit, &t.batch_no, &a.source, t.event_time));
            }
        }
        Ok(())
    }

    /// Sales, record by record: batch quality (`expired_batch_sold`, `failed_batch_sold` of a
    /// failed or never-released batch) and then traceability codes. The failing days were
    /// looked up for the whole batch and failures applied before this loop.
    pub(super) fn judge_sales(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        known: &Known,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        out: &mut BatchOutcome,
    ) -> Result<()> {
        let mut codes: Vec<(&String, &SalesRecord, &Source)> = Vec::new();
        for a in batch {
            let Record::Sales(s) = &a.record else {
                continue;
            };
            let day = biz_date(&s.event_time);
            let st = state_of(states, a.source.partition)?;
            let key = (s.product_id.clone(), s.batch_no.clone());
            let failed = self.failed_on(known, &key);
            self.batch_quality(s, day, &key, failed, &a.source, out);
            st.add_batch_sale(
                &s.enterprise_id,
                day,
                &s.product_id,
                &s.batch_no,
                s.quantity,
            );
            if let Some(code) = &s.trace_code {
                codes.push((code, s, &a.source));
            }
        }
        // Traceability codes in code order and, per code, in sale order: the earliest sale is
        // the original, and every later one repeats it, whatever the arrival order.
        codes.sort_unstable_by(|a, b| {
            (a.0, a.1.event_time, &a.1.event_id).cmp(&(b.0, b.1.event_time, &b.1.event_id))
        });
        let mut first = self.first_sales(tx, path, &codes)?;
        for (code, s, source) in codes {
            self.trace(&mut first, s, code, source, out);
        }
        write_first_sales(tx, path, first)
    }

    /// The batch-quality events of one sale: an expired batch, a batch failed on or before the
    /// sale day, or a batch never released.
    fn batch_quality(
        &self,
        s: &SalesRecord,
        day: NaiveDate,
        key: &(String, String),
        failed: Option<NaiveDate>,
        source: &Source,
        out: &mut BatchOutcome,
    ) {
        let mk = |indicator: &str, ws: NaiveDate, detail: String| Hit {
            enterprise_id: s.enterprise_id.clone(),
            product_id: Some(s.product_id.clone()),
            date: day,
            indicator: indicator.into(),
            window_start: ws,
            window_end: day,
            observed: s.quantity as f64,
            expected: 0.0,
            detail,
        };
        let batch_ref = self.reference.batches.get(key);
        if let Some(b) = batch_ref
            && day > b.expiry_date
        {
            let hit = mk(
                "expired_batch_sold",
                b.expiry_date,
                format!("batch={};expiry={}", s.batch_no, date_str(b.expiry_date)),
            );
            out.events
                .push(self.event(hit, &s.batch_no, source, s.event_time));
        }
        if let Some(f) = failed.filter(|f| day >= *f) {
            let hit = mk(
                "failed_batch_sold",
                f,
                format!("batch={};failed_on={}", s.batch_no, date_str(f)),
            );
            out.events
                .push(self.event(hit, &s.batch_no, source, s.event_time));
        } else if batch_ref.is_some_and(|b| !b.released) {
            let hit = mk(
                "failed_batch_sold",
                day,
                format!("batch={};not_released", s.batch_no),
            );
            out.events
                .push(self.event(hit, &s.batch_no, source, s.event_time));
        }
    }

    /// The first sale on record of each of the batch's traceability codes (sorted by code,
    /// then sale). A code never seen is recorded at once with its earliest sale of the batch
    /// (most codes are new: one statement settles them); the others are read back.
    fn first_sales(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        codes: &[(&String, &SalesRecord, &Source)],
    ) -> Result<FastMap<String, FirstSale>> {
        let earliest: Vec<(&String, &SalesRecord)> = codes
            .iter()
            .enumerate()
            .filter(|(i, c)| *i == 0 || codes[i - 1].0 != c.0)
            .map(|(_, (code, s, _))| (*code, *s))
            .collect();
        let mut rows = TraceCodeRows::default();
        for (code, s) in &earliest {
            rows.push(
                (*code).clone(),
                s.event_time.timestamp_millis(),
                s.event_id.clone(),
                s.enterprise_id.clone(),
                s.product_id.clone(),
                biz_date(&s.event_time),
            );
        }
        let inserted = tx
            .insert_new("trace_codes", &rows.columns())
            .map_err(|e| sql_err(path, "record trace codes", e))?;
        let mut first: FastMap<String, FirstSale> = FastMap::default();
        let mut on_record: Vec<Vec<Value>> = Vec::new();
        for ((code, s), new) in earliest.iter().zip(inserted) {
            if new {
                let stored = FirstSale {
                    changed: false,
                    ..FirstSale::of(s)
                };
                first.insert((*code).clone(), stored);
            } else {
                on_record.push(vec![Value::Text((*code).clone())]);
            }
        }
        let rows = tx
            .select_keyed(
                "SELECT trace_code, event_time_ms, event_id, enterprise_id, product_id, biz_date
                 FROM trace_codes",
                "trace_codes",
                &["trace_code"],
                &on_record,
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        FirstSale {
                            ms: r.get(1)?,
                            event_id: r.get(2)?,
                            enterprise_id: r.get(3)?,
                            product_id: r.get(4)?,
                            day: parse_date(&r.get::<_, String>(5)?)?,
                            changed: false,
                        },
                    ))
                },
            )
            .map_err(|e| sql_err(path, "read trace codes", e))?;
        first.extend(rows);
        Ok(first)
    }

    /// One sale's traceability code against its first sale on record: a repeat becomes a
    /// `trace_code_duplicate` event (of whichever sale is the later), and an earlier sale
    /// becomes the first on record.
    fn trace(
        &self,
        first: &mut FastMap<String, FirstSale>,
        s: &SalesRecord,
        code: &str,
        source: &Source,
        out: &mut BatchOutcome,
    ) {
        let Some(f) = first.get_mut(code) else {
            first.insert(code.to_string(), FirstSale::of(s));
            return;
        };
        if f.event_id == s.event_id {
            return;
        }
        let day = biz_date(&s.event_time);
        let ms = s.event_time.timestamp_millis();
        let lookback = Duration::days(self.thresholds.trace_lookback());
        if (ms, s.event_id.as_str()) > (f.ms, f.event_id.as_str()) {
            // This sale repeats a code sold before.
            if f.day >= day - lookback {
                let hit = Hit {
                    enterprise_id: s.enterprise_id.clone(),
                    product_id: Some(s.product_id.clone()),
                    date: day,
                    indicator: "trace_code_duplicate".into(),
                    window_start: f.day,
                    window_end: day,
                    observed: 1.0,
                    expected: 0.0,
                    detail: format!(
                        "code={code};first_sold={};first_seller={}",
                        date_str(f.day),
                        f.enterprise_id
                    ),
                };
                out.events.push(self.event(hit, "", source, s.event_time));
            }
        } else {
            // This sale is earlier than the one on record: that one is the repeat.
            let older = std::mem::replace(f, FirstSale::of(s));
            if day >= older.day - lookback {
                let hit = Hit {
                    enterprise_id: older.enterprise_id,
                    product_id: Some(older.product_id),
                    date: older.day,
                    indicator: "trace_code_duplicate".into(),
                    window_start: day,
                    window_end: older.day,
                    observed: 1.0,
                    expected: 0.0,
                    detail: format!(
                        "code={code};first_sold={};first_seller={}",
                        date_str(day),
                        s.enterprise_id
                    ),
                };
                let et = DateTime::from_timestamp_millis(older.ms)
                    .map(|t| t.with_timezone(&pharmwatch_schemas::shanghai()))
                    .unwrap_or(s.event_time);
                out.events.push(self.event(hit, "", source, et));
            }
        }
    }

    /// The retail quantity of (enterprise, product) on `d`: nightly history plus stream windows.
    pub(super) fn retail(&self, st: &PartitionState, ent: &str, prod: &str, d: NaiveDate) -> f64 {
        let base = self
            .baseline
            .retail
            .get(&(ent.to_string(), prod.to_string()))
            .and_then(|m| m.get(&d))
            .copied()
            .unwrap_or(0.0);
        let live = st
            .windows
            .get(&(ent.to_string(), prod.to_string(), d))
            .map_or(0.0, |w| w.retail);
        base + live
    }

    /// The special-drug surge rule of `retail_spike.sql` on the window's cumulative quantity.
    pub(super) fn surge(&self, st: &PartitionState, key: &WinKey) -> Option<Hit> {
        let (ent, prod, d) = key;
        let w = st.windows.get(key)?;
        if w.surge_fired {
            return None;
        }
        let class = self.reference.products.get(prod)?.special_class;
        if !class.is_volume_controlled() {
            return None;
        }
        let t = &self.thresholds;
        let from = *d - Duration::days(28);
        let mut sum = 0.0;
        let mut sale_days = 0;
        // The baseline starts at the product's first sale in the 28 days (a product listed
        // two weeks ago has a two-week baseline), as in `retail_spike.sql`.
        let mut first_sale: Option<NaiveDate> = None;
        let mut day = from;
        let base = self.baseline.retail.get(&(ent.clone(), prod.clone()));
        while day < *d {
            let q = self.retail(st, ent, prod, day);
            if q > 0.0 || base.is_some_and(|m| m.contains_key(&day)) {
                sale_days += 1;
                first_sale.get_or_insert(day);
            }
            sum += q;
            day += Duration::days(1);
        }
        let span_days = first_sale.map_or(0, |f| (*d - f).num_days());
        let active = {
            let live = st.retail_days.get(ent);
            let base = self.baseline.retail_days.get(ent);
            let mut n = 0u32;
            let mut day = from;
            while day < *d {
                if live.is_some_and(|s| s.contains(&day)) || base.is_some_and(|s| s.contains(&day))
                {
                    n += 1;
                }
                day += Duration::days(1);
            }
            n
        };
        // Prices are not kept in the stream's windows, so a promotion is not told from a
        // surge here (the nightly's `promo_lift`); controlled products are rarely promoted.
        let mean = sum / span_days.max(1) as f64;
        let qty = w.retail;
        let fires = active >= t.min_active_days
            && span_days >= i64::from(t.min_listed_days)
            && sale_days >= 3
            && qty >= t.special_ratio * mean
            && qty - mean >= t.special_z * mean.sqrt() + t.special_abs;
        fires.then(|| Hit {
            enterprise_id: ent.clone(),
            product_id: Some(prod.clone()),
            date: *d,
            indicator: "special_drug_volume".into(),
            window_start: from,
            window_end: *d,
            observed: qty,
            expected: mean,
            detail: format!("class={};basis=retail_sales", class.as_str()),
        })
    }

    /// The reconciliation of `inventory.sql` for business day `d` of a partition.
    pub(super) fn reconcile(&self, st: &PartitionState, d: NaiveDate) -> Vec<Hit> {
        let prev = d - Duration::days(1);
        let reported = |ent: &str, day: NaiveDate| {
            st.reported.contains(&(ent.to_string(), day))
                || (Some(day) == self.baseline.to && self.baseline.reported.contains(ent))
        };
        let opening = |ent: &str, prod: &str| -> i64 {
            if let Some(c) = st
                .windows
                .get(&(ent.to_string(), prod.to_string(), prev))
                .and_then(|w| w.closing)
            {
                return c;
            }
            if Some(prev) == self.baseline.to {
                return self
                    .baseline
                    .closing
                    .get(&(ent.to_string(), prod.to_string()))
                    .copied()
                    .unwrap_or(0);
            }
            0
        };
        let t = &self.thresholds;
        let mut keys: Vec<&WinKey> = st.windows.keys().filter(|k| k.2 == d).collect();
        keys.sort();
        let mut hits = Vec::new();
        for k in keys {
            let (ent, prod, _) = k;
            if !(reported(ent, d) && reported(ent, prev)) {
                continue;
            }
            let Some(w) = st.windows.get(k) else { continue };
            let open = opening(ent, prod);
            let avail = open + w.inflow;
            let detail = format!("opening={open};inflow={};sold={}", w.inflow, w.sold);
            let hit = |indicator: &str, observed: i64, expected: i64| Hit {
                enterprise_id: ent.clone(),
                product_id: Some(prod.clone()),
                date: d,
                indicator: indicator.into(),
                window_start: d,
                window_end: d,
                observed: observed as f64,
                expected: expected as f64,
                detail: detail.clone(),
            };
            if w.sold > avail {
                hits.push(hit("sold_not_bought", w.sold, avail));
            } else if let Some(c) = w.closing {
                let expect = avail - w.sold;
                let gap = (c - expect).abs() as f64;
                if gap >= t.mismatch_min.max(t.mismatch_share * avail as f64) {
                    hits.push(hit("inventory_mismatch", c, expect));
                }
            }
        }
        hits
    }
}

/// A sweep through `trace_codes` in code order that forgets the first sales before
/// `keep_from`, a slice of codes per micro-batch (see [`Engine::sweep_trace_codes`]).
///
/// The sweep needs no index by day (one would cost every inserted code a second B-tree entry
/// and its pages at commit): it walks the table's own key, so a slice costs about its rows
/// read, and a whole sweep is spread over many batches. A sweep whose slice is rolled back is
/// repeated from the same code; two instances sweeping at once delete the same rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSweep {
    /// The first day kept.
    pub keep_from: NaiveDate,
    /// The last code the sweep has passed (empty before its first slice).
    pub after: String,
}

impl TraceSweep {
    /// A sweep from the first code on record.
    pub fn new(keep_from: NaiveDate) -> Self {
        Self {
            keep_from,
            after: String::new(),
        }
    }
}

/// Codes a slice of a [`TraceSweep`] reads (about 9 ms on a table of 1.3 million codes here):
/// those 1.3 million (600 enterprises' 35 days) are swept in 66 batches, a province's 160
/// million (10,000 enterprises' 60 days) in 8,000 — hours of a day that closes once in 24.
const TRACE_SWEEP_ROWS: i64 = 20_000;

/// The sweeps of one instance: one begins when the instance's earliest closed day has moved on
/// since the last one began, and goes on a slice per micro-batch until it has passed the last
/// code. A slice is swept inside the batch's transaction and taken in only once that commits.
#[derive(Debug, Default)]
pub struct TraceSweeper {
    /// The earliest closed day when the last sweep began.
    began_for: Option<NaiveDate>,
    /// The sweep in progress.
    sweep: Option<TraceSweep>,
}

/// A slice a batch's transaction swept, for [`TraceSweeper::committed`].
#[derive(Debug)]
pub struct SweptSlice {
    /// The earliest closed day a sweep began for, when one began (a sweep begins only once
    /// some day is closed).
    began_for: Option<NaiveDate>,
    /// The sweep the slice belongs to.
    swept: Option<TraceSweep>,
    /// Where its next slice starts; `None` once it has passed the last code.
    next: Option<TraceSweep>,
}

impl TraceSweeper {
    /// Sweeps this batch's slice in `tx`, `earliest_closed` being the earliest day closed by
    /// the instance's partitions.
    pub fn slice(
        &self,
        engine: &Engine,
        tx: &Transaction<'_>,
        path: &Path,
        earliest_closed: Option<NaiveDate>,
    ) -> Result<SweptSlice> {
        let begin = self.sweep.is_none() && earliest_closed > self.began_for;
        let swept = match &self.sweep {
            Some(s) => Some(s.clone()),
            None if begin => engine.trace_keep_from(tx, path)?.map(TraceSweep::new),
            None => None,
        };
        let next = match &swept {
            Some(s) => engine.sweep_trace_codes(tx, path, s, TRACE_SWEEP_ROWS)?,
            None => None,
        };
        Ok(SweptSlice {
            began_for: earliest_closed.filter(|_| begin),
            swept,
            next,
        })
    }

    /// Takes in `slice` once the transaction that swept it has committed.
    pub fn committed(&mut self, slice: SweptSlice) {
        if slice.began_for.is_some() {
            self.began_for = slice.began_for;
        }
        if let Some(s) = slice.swept {
            if slice.next.is_none() {
                tracing::debug!(kept_from = %s.keep_from, "traceability codes before the look-back of every open day forgotten");
            }
            self.sweep = slice.next;
        }
    }
}

impl Engine {
    /// The first day of traceability codes an open day of any partition can reach: the trace
    /// look-back of the earliest day still open in the store (the smallest `closed_through`
    /// of every partition, whichever instance holds it, plus one). A sale of an open day is a
    /// repeat only of a sale within its look-back, so the first sales before this day decide
    /// nothing; without forgetting them the table, and the memory its lookups map, grows with
    /// every code ever sold. `None` while a partition has closed no day (it holds everything).
    pub fn trace_keep_from(&self, tx: &Transaction<'_>, path: &Path) -> Result<Option<NaiveDate>> {
        let e = |what: &'static str| move |err| sql_err(path, what, err);
        let mut earliest_closed: Option<NaiveDate> = None;
        let mut st = tx
            .prepare("SELECT partition, meta_json FROM stream_partitions")
            .map_err(e("read partitions"))?;
        let metas = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(e("read partitions"))?;
        for row in metas {
            let (p, json) = row.map_err(e("read partitions"))?;
            let meta = super::PartitionMeta::parse(&json, p, path)?;
            let Some(c) = meta.closed_through else {
                return Ok(None);
            };
            earliest_closed = Some(earliest_closed.map_or(c, |m| m.min(c)));
        }
        Ok(earliest_closed
            .map(|c| c + Duration::days(1) - Duration::days(self.thresholds.trace_lookback())))
    }

    /// One slice of `sweep`: forgets the first sales before its `keep_from` among the next
    /// `rows` codes after its `after`. The slice is read once (how many codes, the last, how
    /// many are old) and deleted from only when it holds old codes. Returns where the next
    /// slice starts, or `None` when this slice reached the last code (the sweep is done).
    pub fn sweep_trace_codes(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        sweep: &TraceSweep,
        rows: i64,
    ) -> Result<Option<TraceSweep>> {
        let e = |what: &'static str| move |err| sql_err(path, what, err);
        let keep_from = date_str(sweep.keep_from);
        let (read, last, old): (i64, Option<String>, i64) = tx
            .query_row(
                "SELECT count(*), max(trace_code),
                        coalesce(sum(CASE WHEN biz_date < ?3 THEN 1 ELSE 0 END), 0)
                 FROM (SELECT trace_code, biz_date FROM trace_codes WHERE trace_code > ?1
                       ORDER BY trace_code LIMIT ?2) slice",
                params![sweep.after.as_str(), rows, keep_from.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(e("sweep trace codes"))?;
        let Some(last) = last else {
            return Ok(None);
        };
        if old > 0 {
            tx.execute(
                "DELETE FROM trace_codes
                 WHERE trace_code > ?1 AND trace_code <= ?2 AND biz_date < ?3",
                params![sweep.after.as_str(), last.as_str(), keep_from],
            )
            .map_err(e("prune trace codes"))?;
        }
        Ok((read == rows).then_some(TraceSweep {
            keep_from: sweep.keep_from,
            after: last,
        }))
    }
}

/// Writes the first sales that are new or were replaced by an earlier sale, in code order.
fn write_first_sales(
    tx: &Transaction<'_>,
    path: &Path,
    first: FastMap<String, FirstSale>,
) -> Result<()> {
    let mut changed: Vec<(String, FirstSale)> =
        first.into_iter().filter(|(_, f)| f.changed).collect();
    changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut rows = TraceCodeRows::default();
    for (code, f) in changed {
        rows.push(code, f.ms, f.event_id, f.enterprise_id, f.product_id, f.day);
    }
    tx.insert_rows("trace_codes", &rows.columns(), TRACE_CODES_REPLACE)
        .map_err(|e| sql_err(path, "record trace codes", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharmwatch_core::store::Store;

    fn engine() -> Engine {
        Engine {
            reference: Default::default(),
            baseline: Default::default(),
            thresholds: Default::default(),
            lateness_ms: 0,
            close_grace: std::time::Duration::ZERO,
        }
    }

    fn codes_left(store: &Store) -> Vec<String> {
        let mut st = store
            .conn_ref()
            .prepare("SELECT biz_date FROM trace_codes ORDER BY biz_date")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// The first sales before the look-back of the earliest open day of any partition are
    /// forgotten by a sweep in slices; those an open day can still reach stay, and nothing
    /// goes while a partition has closed no day.
    #[test]
    fn trace_codes_are_forgotten_only_beyond_every_open_days_look_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = pharmwatch_core::db::scratch_store(dir.path());
        let mut store = Store::open(&path).unwrap();
        let engine = engine();
        let lookback = engine.thresholds.trace_lookback();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // Partition 0 has closed 2026-06-30, partition 1 only 2026-06-20: the earliest open
        // day is 2026-06-21, which reaches back `lookback` days.
        let keep_from = d("2026-06-21") - Duration::days(lookback);
        let days = [
            keep_from - Duration::days(30),
            keep_from - Duration::days(1),
            keep_from,
            d("2026-06-25"),
        ];
        let tx = store.conn().transaction().unwrap();
        let mut rows = TraceCodeRows::default();
        for (i, day) in days.iter().enumerate() {
            rows.push(
                format!("C{i}"),
                0,
                format!("E{i}"),
                "ENT".into(),
                "P".into(),
                *day,
            );
        }
        tx.insert_rows("trace_codes", &rows.columns(), "").unwrap();
        let meta = |closed: Option<&str>| {
            serde_json::to_string(&super::super::PartitionMeta {
                closed_through: closed.map(d),
                ..Default::default()
            })
            .unwrap()
        };
        for (p, closed) in [(0, Some("2026-06-30")), (1, None)] {
            tx.execute(
                "INSERT INTO stream_partitions (partition, epoch, meta_json) VALUES (?1, 1, ?2)",
                params![p, meta(closed)],
            )
            .unwrap();
        }
        assert_eq!(engine.trace_keep_from(&tx, &path).unwrap(), None);
        tx.commit().unwrap();
        assert_eq!(codes_left(&store).len(), 4, "partition 1 has closed no day");

        let tx = store.conn().transaction().unwrap();
        tx.execute(
            "UPDATE stream_partitions SET meta_json = ?1 WHERE partition = 1",
            params![meta(Some("2026-06-20"))],
        )
        .unwrap();
        assert_eq!(engine.trace_keep_from(&tx, &path).unwrap(), Some(keep_from));
        tx.commit().unwrap();
        // Swept two codes a slice, one transaction each: C0 and C1, C2 and C3, then the end.
        let mut sweep = TraceSweep::new(keep_from);
        let mut slices = Vec::new();
        loop {
            let tx = store.conn().transaction().unwrap();
            let next = engine.sweep_trace_codes(&tx, &path, &sweep, 2).unwrap();
            tx.commit().unwrap();
            slices.push(codes_left(&store).len());
            match next {
                Some(n) => sweep = n,
                None => break,
            }
        }
        assert_eq!(slices, [2, 2, 2], "codes left after each slice");
        assert_eq!(
            codes_left(&store),
            [date_str(keep_from), "2026-06-25".to_string()]
        );
        // A sweep past the last code forgets nothing more.
        let tx = store.conn().transaction().unwrap();
        assert_eq!(
            engine.sweep_trace_codes(&tx, &path, &sweep, 2).unwrap(),
            None
        );
        tx.commit().unwrap();
        assert_eq!(codes_left(&store).len(), 2);
    }
}
