//! The stream's record rules, judged record by record as a micro-batch arrives: failing
//! tests and the sales of failed, expired or unreleased batches; traceability codes sold twice
//! (the earliest sale is the original, whatever the arrival order); the special-drug surge of a
//! window against its 28-day baseline; and the day-close reconciliation of stock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate};
use pharmwatch_core::db::{OptionalExtension, Transaction};
use pharmwatch_core::params;

use crate::error::Result;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::fasthash::FastMap;
use pharmwatch_core::indicators::Hit;
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::{SalesRecord, TestResult, biz_date};

use super::record::{Accepted, Record, Source};
use super::state::{PartitionState, WinKey, date_str};
use super::{BatchOutcome, Engine, state_of};

impl Engine {
    /// The day a batch failed its test, from the store or the nightly baseline (the earlier).
    fn failed_on(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        product: &str,
        batch: &str,
    ) -> Result<Option<NaiveDate>> {
        let stored: Option<String> = tx
            .prepare_cached(
                "SELECT failed_on FROM failed_batches WHERE product_id = ?1 AND batch_no = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![product, batch], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_err(path, "read failed batches", e))?;
        let stored = stored.and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok());
        let base = self
            .baseline
            .failed
            .get(&(product.to_string(), batch.to_string()))
            .copied();
        Ok(match (stored, base) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Failing test results: the batch is recorded as failed (earliest day wins), and the sales
    /// of it this partition saw on or after the failing day (and before an earlier known
    /// failure) become `failed_batch_sold` events.
    pub(super) fn apply_failed_tests(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
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
            let before = self.failed_on(tx, path, &t.product_id, &t.batch_no)?;
            tx.execute(
                "INSERT INTO failed_batches (product_id, batch_no, failed_on) VALUES (?1, ?2, ?3)
                 ON CONFLICT (product_id, batch_no) DO UPDATE SET failed_on = CASE
                     WHEN excluded.failed_on < failed_batches.failed_on THEN excluded.failed_on
                     ELSE failed_batches.failed_on END",
                params![t.product_id, t.batch_no, date_str(day)],
            )
            .map_err(|e| sql_err(path, "record failed batch", e))?;
            if before.is_some_and(|b| b <= day) {
                continue;
            }
            // Sales of the batch this partition saw on or after the failing day.
            let st = state_of(states, a.source.partition)?;
            let key = (t.product_id.clone(), t.batch_no.clone());
            let mut per_day: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
            for (ent, d, q) in st.batch_sales.get(&key).into_iter().flatten() {
                if *d >= day && before.is_none_or(|b| *d < b) {
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
    /// failed or never-released batch) and then traceability codes. The failing day of a
    /// batch cannot change during this loop (failures were applied before), so it is looked
    /// up once per (product, batch).
    pub(super) fn judge_sales(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        states: &mut HashMap<i32, PartitionState>,
        batch: &[Accepted],
        out: &mut BatchOutcome,
    ) -> Result<()> {
        let mut failed_days: FastMap<(String, String), Option<NaiveDate>> = FastMap::default();
        let mut codes: Vec<(&String, &SalesRecord, &Source)> = Vec::new();
        for a in batch {
            let Record::Sales(s) = &a.record else {
                continue;
            };
            let day = biz_date(&s.event_time);
            let st = state_of(states, a.source.partition)?;
            let key = (s.product_id.clone(), s.batch_no.clone());
            st.batch_sales.entry(key.clone()).or_default().push((
                s.enterprise_id.clone(),
                day,
                s.quantity,
            ));
            st.new_batch_sales.push((
                s.product_id.clone(),
                s.batch_no.clone(),
                s.enterprise_id.clone(),
                day,
                s.quantity,
            ));
            let failed = match failed_days.get(&key) {
                Some(f) => *f,
                None => {
                    let f = self.failed_on(tx, path, &s.product_id, &s.batch_no)?;
                    failed_days.insert(key.clone(), f);
                    f
                }
            };
            self.batch_quality(s, day, &key, failed, &a.source, out);
            if let Some(code) = &s.trace_code {
                codes.push((code, s, &a.source));
            }
        }
        // Traceability codes in code order, so consecutive lookups share B-tree pages. The
        // order does not change what is found: a repeat is judged by event time either way,
        // and its event id names the later sale whichever of the two came first.
        codes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (code, s, source) in codes {
            self.trace(tx, path, s, code, source, out)?;
        }
        Ok(())
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

    pub(super) fn trace(
        &self,
        tx: &Transaction<'_>,
        path: &Path,
        s: &SalesRecord,
        code: &str,
        source: &Source,
        out: &mut BatchOutcome,
    ) -> Result<()> {
        let day = biz_date(&s.event_time);
        let ms = s.event_time.timestamp_millis();
        // Most codes are new: one insert settles them. Only a code already on record needs
        // the comparison below.
        let inserted = tx
            .prepare_cached(
                "INSERT INTO trace_codes (trace_code, event_time_ms, event_id, enterprise_id, product_id, biz_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (trace_code) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![code, ms, s.event_id, s.enterprise_id, s.product_id, date_str(day)])
            })
            .map_err(|e| sql_err(path, "record trace code", e))?;
        if inserted > 0 {
            return Ok(());
        }
        let (first_ms, first_id, first_ent, first_prod, first_day): (
            i64,
            String,
            String,
            String,
            String,
        ) = tx
            .prepare_cached(
                "SELECT event_time_ms, event_id, enterprise_id, product_id, biz_date
                 FROM trace_codes WHERE trace_code = ?1",
            )
            .and_then(|mut st| {
                st.query_row([code], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
            })
            .map_err(|e| sql_err(path, "read trace codes", e))?;
        if first_id == s.event_id {
            return Ok(());
        }
        let first_day = NaiveDate::parse_from_str(&first_day, "%Y-%m-%d")
            .map_err(|e| CoreError::Internal(format!("trace code day: {e}")))?;
        let lookback = Duration::days(i64::from(self.thresholds.trace_lookback_days.min(60)));
        if (ms, s.event_id.as_str()) > (first_ms, first_id.as_str()) {
            // This sale repeats a code sold before.
            if first_day >= day - lookback {
                let hit = Hit {
                    enterprise_id: s.enterprise_id.clone(),
                    product_id: Some(s.product_id.clone()),
                    date: day,
                    indicator: "trace_code_duplicate".into(),
                    window_start: first_day,
                    window_end: day,
                    observed: 1.0,
                    expected: 0.0,
                    detail: format!(
                        "code={code};first_sold={};first_seller={first_ent}",
                        date_str(first_day)
                    ),
                };
                out.events.push(self.event(hit, "", source, s.event_time));
            }
        } else {
            // This sale is earlier than the one on record: that one is the repeat.
            tx.prepare_cached(
                "UPDATE trace_codes SET event_time_ms = ?2, event_id = ?3, enterprise_id = ?4,
                     product_id = ?5, biz_date = ?6 WHERE trace_code = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    code,
                    ms,
                    s.event_id,
                    s.enterprise_id,
                    s.product_id,
                    date_str(day)
                ])
            })
            .map_err(|e| sql_err(path, "record trace code", e))?;
            if day >= first_day - lookback {
                let hit = Hit {
                    enterprise_id: first_ent,
                    product_id: Some(first_prod),
                    date: first_day,
                    indicator: "trace_code_duplicate".into(),
                    window_start: day,
                    window_end: first_day,
                    observed: 1.0,
                    expected: 0.0,
                    detail: format!(
                        "code={code};first_sold={};first_seller={}",
                        date_str(day),
                        s.enterprise_id
                    ),
                };
                let et = DateTime::from_timestamp_millis(first_ms)
                    .map(|t| t.with_timezone(&pharmwatch_schemas::shanghai()))
                    .unwrap_or(s.event_time);
                out.events.push(self.event(hit, "", source, et));
            }
        }
        Ok(())
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
