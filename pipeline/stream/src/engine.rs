//! The stream's judging engine: decoded micro-batches in, window state and risk events out.
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
//!   partition's watermark is `allowed_lateness` past the day's end, with the rule of
//!   `inventory.sql`.
//!
//! Watermark of a partition: the smallest event-time maximum over its topics that still have
//! unread messages (a topic read to its end does not hold the watermark back; when all are at
//! their end, the largest maximum). A record older than watermark − lateness is late: it is
//! landed and counted, windows take it, but a closed day is not judged again — the next
//! nightly run accounts for it.
//!
//! Invariants: every event has a deterministic id (`RE-<day>-<hash of indicator, enterprise,
//! product, day[, batch]>`), the same whatever the batch boundaries, partition owner or
//! restart; the granularity is the nightly item's, so the stream and the nightly job flag the
//! same enterprise × product × day.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use pharmwatch_core::fasthash::{FastMap, FastSet};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use pharmwatch_schemas::{
    Batch, EventKind, InspectionFinding, InventorySnapshot, Product, ProductTestRecord,
    ProductionRecord, PurchaseRecord, SalesRecord, TestResult, Validate, biz_date,
};

use pharmwatch_core::error::{PipelineError, Result};
use pharmwatch_core::indicators::{Hit, RULE_VERSION, Thresholds, dates, floats, strings};
use pharmwatch_core::ingest::ReferenceSets;
use pharmwatch_core::lake::rows_to_batch;
use pharmwatch_core::query::{collect, register_files, table_rows};
use pharmwatch_core::risk::{self, RiskItem};
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::records::LakeRow;
use pharmwatch_schemas::{Enterprise, ReferenceKind};

use pharmwatch_core::baseline::Baseline;

/// A decoded, validated record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Production.
    Production(ProductionRecord),
    /// Sales.
    Sales(SalesRecord),
    /// Purchase.
    Purchase(PurchaseRecord),
    /// Inventory snapshot.
    Inventory(InventorySnapshot),
    /// Product test.
    ProductTest(ProductTestRecord),
    /// Inspection finding.
    Inspection(InspectionFinding),
}

impl Record {
    /// Event time.
    pub fn event_time(&self) -> &DateTime<FixedOffset> {
        match self {
            Self::Production(r) => r.event_time(),
            Self::Sales(r) => r.event_time(),
            Self::Purchase(r) => r.event_time(),
            Self::Inventory(r) => r.event_time(),
            Self::ProductTest(r) => r.event_time(),
            Self::Inspection(r) => r.event_time(),
        }
    }
    /// Event kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Production(_) => EventKind::Production,
            Self::Sales(_) => EventKind::Sales,
            Self::Purchase(_) => EventKind::Purchase,
            Self::Inventory(_) => EventKind::Inventory,
            Self::ProductTest(_) => EventKind::ProductTest,
            Self::Inspection(_) => EventKind::Inspection,
        }
    }
}

/// Decodes one message of `kind` and validates it against the contract and the reference
/// data. The error is the offending field (`-` for the message as a whole) and the reason.
pub fn decode(
    kind: EventKind,
    payload: &[u8],
    refs: &ReferenceSets,
) -> std::result::Result<Record, (String, String)> {
    fn one<T: serde::de::DeserializeOwned + Validate>(
        payload: &[u8],
        refs: &ReferenceSets,
    ) -> std::result::Result<T, (String, String)> {
        // Almost every message is valid: decode it straight, and only when that fails decode
        // it again tracking the path, to name the offending field.
        if let Ok(rec) = serde_json::from_slice::<T>(payload) {
            pharmwatch_core::ingest::check(&rec, refs, None)?;
            return Ok(rec);
        }
        let mut de = serde_json::Deserializer::from_slice(payload);
        let rec: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ("-".to_string(), format!("invalid JSON: {inner}"))
            } else if path == "." {
                ("-".to_string(), inner.to_string())
            } else {
                (path, inner.to_string())
            }
        })?;
        de.end()
            .map_err(|e| ("-".to_string(), format!("invalid JSON: {e}")))?;
        pharmwatch_core::ingest::check(&rec, refs, None)?;
        Ok(rec)
    }
    Ok(match kind {
        EventKind::Production => Record::Production(one(payload, refs)?),
        EventKind::Sales => Record::Sales(one(payload, refs)?),
        EventKind::Purchase => Record::Purchase(one(payload, refs)?),
        EventKind::Inventory => Record::Inventory(one(payload, refs)?),
        EventKind::ProductTest => Record::ProductTest(one(payload, refs)?),
        EventKind::Inspection => Record::Inspection(one(payload, refs)?),
    })
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Source {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An accepted record with its source.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Source coordinates.
    pub source: Source,
    /// The record.
    pub record: Record,
}

/// A rejected message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Source coordinates.
    pub source: Source,
    /// Event kind of the topic.
    pub kind: String,
    /// Message key, if any.
    pub key: Option<String>,
    /// Offending field (`-` for the message as a whole).
    pub field: String,
    /// Why.
    pub reason: String,
    /// The raw message (UTF-8, lossy).
    pub raw: String,
}

/// A real-time risk event: one risk item with its evidence, published to the risk-events topic
/// and stored in `risk_events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskEvent {
    /// Deterministic id.
    pub id: String,
    /// Indicator.
    pub indicator: String,
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Enterprise name.
    pub enterprise_name: String,
    /// Region code.
    pub region_code: String,
    /// Product id.
    pub product_id: Option<String>,
    /// Business day.
    pub biz_date: NaiveDate,
    /// Event time of the record that triggered it.
    pub event_time: DateTime<FixedOffset>,
    /// When the stream detected it.
    pub detected_at: DateTime<Utc>,
    /// The message that triggered it (topic `close` and offset −1 for a day-close judgement).
    pub source: Source,
    /// Kafka timestamp of that message, epoch milliseconds (for detection latency).
    #[serde(default)]
    pub source_timestamp_ms: Option<i64>,
    /// Score 0–100 of this item alone (severity × credit factor).
    pub score: f64,
    /// Grade A–D of that score.
    pub grade: String,
    /// Rule-set version.
    pub rule_version: String,
    /// The item: window, observed, expected, reason, evidence, severity.
    pub item: RiskItem,
}

/// Reference data the engine judges against.
#[derive(Debug, Default)]
pub struct Reference {
    /// Enterprises by credit code.
    pub enterprises: FastMap<String, Enterprise>,
    /// Products by id.
    pub products: FastMap<String, Product>,
    /// Batches by (product, batch number).
    pub batches: FastMap<(String, String), Batch>,
    /// Known ids, for validation.
    pub sets: ReferenceSets,
}

impl Reference {
    /// Loads `LAKE/reference/*.parquet`.
    pub async fn load(lake: &Path) -> Result<Self> {
        let ctx = SessionContext::new();
        let dir = lake.join(pharmwatch_core::lake::REFERENCE_DIR);
        for kind in ReferenceKind::ALL {
            let path = dir.join(format!("{}.parquet", kind.as_str()));
            if !path.exists() {
                return Err(PipelineError::Lake {
                    path: dir.clone(),
                    reason: format!(
                        "reference table {} is missing (the stream validates records against it)",
                        path.display()
                    ),
                });
            }
            register_files(&ctx, kind.as_str(), kind.schema(), &[path]).await?;
        }
        let enterprises: Vec<Enterprise> = table_rows(&ctx, "enterprises").await?;
        let products: Vec<Product> = table_rows(&ctx, "products").await?;
        let batches: Vec<Batch> = table_rows(&ctx, "batches").await?;
        Ok(Self::new(enterprises, products, batches))
    }

    /// Builds the lookups.
    pub fn new(enterprises: Vec<Enterprise>, products: Vec<Product>, batches: Vec<Batch>) -> Self {
        let sets = ReferenceSets {
            enterprises: enterprises
                .iter()
                .map(|e| e.enterprise_id.clone())
                .collect(),
            products: products.iter().map(|p| p.product_id.clone()).collect(),
        };
        Self {
            enterprises: enterprises
                .into_iter()
                .map(|e| (e.enterprise_id.clone(), e))
                .collect(),
            products: products
                .into_iter()
                .map(|p| (p.product_id.clone(), p))
                .collect(),
            batches: batches
                .into_iter()
                .map(|b| ((b.product_id.clone(), b.batch_no.clone()), b))
                .collect(),
            sets,
        }
    }
}

/// Window of one enterprise × product × business day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Packages sold.
    pub sold: i64,
    /// Packages sold to patients.
    pub retail: f64,
    /// Packages bought or produced.
    pub inflow: i64,
    /// Closing stock, when the day's snapshot has arrived.
    pub closing: Option<i64>,
    /// The special-drug surge already fired.
    pub surge_fired: bool,
}

type WinKey = (String, String, NaiveDate);

/// A window as stored in its enterprise-day row: product, sold, retail, inflow, closing,
/// surge fired (0 or 1).
type StoredWindow = (String, i64, f64, i64, Option<i64>, u8);
type StoredWindowRef<'a> = (&'a str, i64, f64, i64, Option<i64>, u8);

/// Sales per (product, batch): (enterprise, business day, packages).
type BatchSales = FastMap<(String, String), Vec<(String, NaiveDate, i64)>>;

/// Persistent facts of a partition besides its windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionMeta {
    /// Last business day judged (closed).
    pub closed_through: Option<NaiveDate>,
    /// Largest event time seen per event kind, epoch milliseconds.
    pub max_event_ms: BTreeMap<String, i64>,
}

/// State of one partition.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Partition number.
    pub partition: i32,
    /// Metadata.
    pub meta: PartitionMeta,
    /// Next offset to process per topic.
    pub offsets: HashMap<String, i64>,
    /// Ownership epoch this instance took the partition with.
    pub epoch: i64,
    windows: FastMap<WinKey, Window>,
    /// The products with a window per (enterprise, business day): windows are stored one row
    /// per enterprise-day.
    ent_days: FastMap<(String, NaiveDate), Vec<String>>,
    reported: FastSet<(String, NaiveDate)>,
    retail_days: FastMap<String, FastSet<NaiveDate>>,
    batch_sales: BatchSales,
    /// Enterprise-days whose windows changed since the last save.
    dirty: FastSet<(String, NaiveDate)>,
    new_reported: Vec<(String, NaiveDate)>,
    new_batch_sales: Vec<(String, String, String, NaiveDate, i64)>,
    /// The `closed_through` the stored rows were last pruned at: pruning scans the
    /// partition's rows, so it runs when a day closes, not on every batch.
    pruned_at: Option<NaiveDate>,
}

/// `YYYY-MM-DD`, as the store keeps business days (written for every window and sale, so it
/// skips chrono's format-string interpreter for the common four-digit year).
fn date_str(d: NaiveDate) -> String {
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        return d.format("%Y-%m-%d").to_string();
    }
    let digit = |v: u32| char::from(b'0' + (v % 10) as u8);
    let y = y as u32;
    let mut s = String::with_capacity(10);
    for c in [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        '-',
        digit(m / 10),
        digit(m),
        '-',
        digit(day / 10),
        digit(day),
    ] {
        s.push(c);
    }
    s
}

fn parse_date(s: &str) -> rusqlite::Result<NaiveDate> {
    let b = s.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let num = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0u32, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10))
            && let Some(date) = NaiveDate::from_ymd_opt(y as i32, m, d)
        {
            return Ok(date);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl PartitionState {
    /// Loads partition `p` from the store (empty state for a partition never seen).
    pub fn load(tx: &Transaction<'_>, path: &Path, p: i32) -> Result<Self> {
        let e = |what: &str| {
            let what = what.to_string();
            move |err| sql_err(path, &what, err)
        };
        let mut s = Self {
            partition: p,
            ..Self::default()
        };
        // Take ownership: raise the epoch, so a previous owner's next batch is refused.
        tx.execute(
            "INSERT INTO stream_partitions (partition, epoch, meta_json) VALUES (?1, 1, '{}')
             ON CONFLICT (partition) DO UPDATE SET epoch = epoch + 1",
            [p],
        )
        .map_err(e("take partition"))?;
        let (epoch, meta): (i64, String) = tx
            .query_row(
                "SELECT epoch, meta_json FROM stream_partitions WHERE partition = ?1",
                [p],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(e("load partition"))?;
        s.epoch = epoch;
        let meta = Some(meta);
        if let Some(m) = meta {
            s.meta = serde_json::from_str(&m).map_err(|err| PipelineError::Store {
                path: path.to_path_buf(),
                reason: format!("partition {p} metadata: {err}"),
            })?;
        }
        let mut st = tx
            .prepare("SELECT topic, next_offset FROM stream_offsets WHERE partition = ?1")
            .map_err(e("load offsets"))?;
        for row in st
            .query_map([p], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(e("load offsets"))?
        {
            let (t, o) = row.map_err(e("load offsets"))?;
            s.offsets.insert(t, o);
        }
        let mut st = tx
            .prepare(
                "SELECT enterprise_id, biz_date, windows FROM stream_window_sets WHERE partition = ?1",
            )
            .map_err(e("load windows"))?;
        for row in st
            .query_map([p], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_date(&r.get::<_, String>(1)?)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(e("load windows"))?
        {
            let (ent, day, json) = row.map_err(e("load windows"))?;
            let set: Vec<StoredWindow> =
                serde_json::from_str(&json).map_err(|err| PipelineError::Store {
                    path: path.to_path_buf(),
                    reason: format!(
                        "partition {p}: windows of {ent} on {}: {err}",
                        date_str(day)
                    ),
                })?;
            for (product, sold, retail, inflow, closing, surge_fired) in set {
                if retail > 0.0 {
                    s.retail_days.entry(ent.clone()).or_default().insert(day);
                }
                *s.window_mut((ent.clone(), product, day)).0 = Window {
                    sold,
                    retail,
                    inflow,
                    closing,
                    surge_fired: surge_fired != 0,
                };
            }
        }
        // Loading marks nothing to save.
        s.dirty.clear();
        let mut st = tx
            .prepare("SELECT enterprise_id, biz_date FROM stream_reported WHERE partition = ?1")
            .map_err(e("load reported"))?;
        for row in st
            .query_map([p], |r| {
                Ok((r.get::<_, String>(0)?, parse_date(&r.get::<_, String>(1)?)?))
            })
            .map_err(e("load reported"))?
        {
            s.reported.insert(row.map_err(e("load reported"))?);
        }
        let mut st = tx
            .prepare(
                "SELECT product_id, batch_no, enterprise_id, biz_date, quantity
                 FROM stream_batch_sales WHERE partition = ?1",
            )
            .map_err(e("load batch sales"))?;
        for row in st
            .query_map([p], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    parse_date(&r.get::<_, String>(3)?)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(e("load batch sales"))?
        {
            let (prod, batch, ent, day, q) = row.map_err(e("load batch sales"))?;
            s.batch_sales
                .entry((prod, batch))
                .or_default()
                .push((ent, day, q));
        }
        Ok(s)
    }

    /// Whether this instance still owns the partition (its epoch is the store's).
    pub fn owned(&self, tx: &Transaction<'_>, path: &Path) -> Result<bool> {
        let epoch: Option<i64> = tx
            .query_row(
                "SELECT epoch FROM stream_partitions WHERE partition = ?1",
                [self.partition],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_err(path, "read partition epoch", e))?;
        Ok(epoch == Some(self.epoch))
    }

    /// Writes what changed since the last save, the metadata and the offsets.
    pub fn save(&mut self, tx: &Transaction<'_>, path: &Path) -> Result<()> {
        let e = |what: &'static str| move |err| sql_err(path, what, err);
        let p = self.partition;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO stream_window_sets (partition, biz_date, enterprise_id, windows)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (partition, biz_date, enterprise_id) DO UPDATE SET
                         windows = excluded.windows",
                )
                .map_err(e("save windows"))?;
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM stream_window_sets WHERE partition = ?1 AND biz_date = ?2
                         AND enterprise_id = ?3",
                )
                .map_err(e("save windows"))?;
            // In key order: consecutive writes land on the same B-tree pages.
            let mut dirty: Vec<(String, NaiveDate)> = self.dirty.drain().collect();
            dirty.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            for (ent, day) in dirty {
                let mut set: Vec<StoredWindowRef<'_>> = Vec::new();
                if let Some(products) = self.ent_days.get_mut(&(ent.clone(), day)) {
                    products.sort_unstable();
                    for prod in products.iter() {
                        if let Some(w) = self.windows.get(&(ent.clone(), prod.clone(), day)) {
                            set.push((
                                prod,
                                w.sold,
                                w.retail,
                                w.inflow,
                                w.closing,
                                u8::from(w.surge_fired),
                            ));
                        }
                    }
                }
                if set.is_empty() {
                    del.execute(params![p, date_str(day), ent])
                        .map_err(e("save windows"))?;
                } else {
                    let json = serde_json::to_string(&set)
                        .map_err(|err| PipelineError::Internal(err.to_string()))?;
                    up.execute(params![p, date_str(day), ent, json])
                        .map_err(e("save windows"))?;
                }
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO stream_reported (partition, enterprise_id, biz_date)
                     VALUES (?1, ?2, ?3)",
                )
                .map_err(e("save reported"))?;
            for (ent, d) in self.new_reported.drain(..) {
                ins.execute(params![p, ent, date_str(d)])
                    .map_err(e("save reported"))?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO stream_batch_sales (partition, product_id, batch_no, enterprise_id,
                         biz_date, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (partition, product_id, batch_no, enterprise_id, biz_date)
                     DO UPDATE SET quantity = quantity + excluded.quantity",
                )
                .map_err(e("save batch sales"))?;
            // One row per (product, batch, enterprise, day), however many sales it had.
            let mut sums: FastMap<(String, String, String, NaiveDate), i64> = FastMap::default();
            for (prod, batch, ent, d, q) in self.new_batch_sales.drain(..) {
                *sums.entry((prod, batch, ent, d)).or_default() += q;
            }
            let mut sums: Vec<_> = sums.into_iter().collect();
            sums.sort_unstable();
            for ((prod, batch, ent, d), q) in sums {
                ins.execute(params![p, prod, batch, ent, date_str(d), q])
                    .map_err(e("save batch sales"))?;
            }
            let mut off = tx
                .prepare_cached(
                    "INSERT INTO stream_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3)
                     ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                )
                .map_err(e("save offsets"))?;
            for (t, o) in &self.offsets {
                off.execute(params![t, p, o]).map_err(e("save offsets"))?;
            }
        }
        let meta = serde_json::to_string(&self.meta)
            .map_err(|err| PipelineError::Internal(err.to_string()))?;
        tx.execute(
            "INSERT INTO stream_partitions (partition, meta_json) VALUES (?1, ?2)
             ON CONFLICT (partition) DO UPDATE SET meta_json = excluded.meta_json",
            params![p, meta],
        )
        .map_err(e("save partition"))?;
        if let Some(c) = self
            .meta
            .closed_through
            .filter(|c| self.pruned_at != Some(*c))
        {
            self.pruned_at = Some(c);
            // Windows older than the surge baseline (28 days) and the batch-sale memory are
            // no longer needed.
            let keep_from = c - Duration::days(29);
            tx.execute(
                "DELETE FROM stream_window_sets WHERE partition = ?1 AND biz_date < ?2",
                params![p, date_str(keep_from)],
            )
            .map_err(e("prune windows"))?;
            tx.execute(
                "DELETE FROM stream_reported WHERE partition = ?1 AND biz_date < ?2",
                params![p, date_str(keep_from)],
            )
            .map_err(e("prune reported"))?;
            tx.execute(
                "DELETE FROM stream_batch_sales WHERE partition = ?1 AND biz_date < ?2",
                params![p, date_str(keep_from)],
            )
            .map_err(e("prune batch sales"))?;
        }
        Ok(())
    }

    /// The partition's watermark (epoch ms): the smallest event-time maximum over the kinds
    /// `holding` says still have unread messages; with none holding, the largest maximum. A
    /// holding kind never seen holds the watermark at the start of time.
    pub fn watermark(&self, holding: &dyn Fn(EventKind) -> bool) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut any_holding = false;
        for k in EventKind::ALL {
            if holding(*k) {
                any_holding = true;
                let m = self
                    .meta
                    .max_event_ms
                    .get(k.as_str())
                    .copied()
                    .unwrap_or(i64::MIN);
                min = Some(min.map_or(m, |x: i64| x.min(m)));
            }
        }
        if any_holding {
            return min.filter(|m| *m != i64::MIN);
        }
        self.meta.max_event_ms.values().copied().max()
    }

    /// The window of `key` (created empty when new), marked to be saved; with the key back.
    fn window_mut(&mut self, key: WinKey) -> (&mut Window, WinKey) {
        let day_key = (key.0.clone(), key.2);
        if !self.dirty.contains(&day_key) {
            self.dirty.insert(day_key.clone());
        }
        if !self.windows.contains_key(&key) {
            self.ent_days
                .entry(day_key)
                .or_default()
                .push(key.1.clone());
        }
        let w = self.windows.entry(key.clone()).or_default();
        (w, key)
    }

    fn prune(&mut self) {
        let Some(c) = self.meta.closed_through else {
            return;
        };
        let keep_from = c - Duration::days(29);
        self.windows.retain(|k, _| k.2 >= keep_from);
        self.ent_days.retain(|k, _| k.1 >= keep_from);
        self.reported.retain(|k| k.1 >= keep_from);
        for days in self.retail_days.values_mut() {
            days.retain(|d| *d >= keep_from);
        }
        for v in self.batch_sales.values_mut() {
            v.retain(|s| s.1 >= keep_from);
        }
        self.batch_sales.retain(|_, v| !v.is_empty());
    }
}

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
}

fn day_end_ms(d: NaiveDate) -> i64 {
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

impl Engine {
    /// Whether partition state `st` would close a business day at watermark `wm`.
    pub fn would_close(&self, st: &PartitionState, wm: Option<i64>) -> bool {
        match (st.meta.closed_through, wm) {
            (Some(c), Some(wm)) => {
                day_end_ms(c + Duration::days(1)).saturating_add(self.lateness_ms) <= wm
            }
            _ => false,
        }
    }

    fn event(
        &self,
        hit: Hit,
        extra: &str,
        source: &Source,
        event_time: DateTime<FixedOffset>,
    ) -> RiskEvent {
        let e = self.reference.enterprises.get(&hit.enterprise_id);
        let credit = e.map(|e| e.credit_grade.as_str()).unwrap_or("B");
        let (score, grade) = risk::single_item_score(&hit.indicator, credit);
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

    /// Judges one micro-batch of accepted records for the partitions in `states`, updating
    /// their windows and metadata and the shared tables through `tx`. `holding(kind, p)` says
    /// whether partition `p` of `kind`'s topic still has unread messages. `deltas` gives the
    /// batch's window deltas ([`window_deltas`] over its lake batches); it is called once the
    /// record-by-record rules are done, so the caller can compute them on another thread
    /// meanwhile.
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
        // Lateness is judged against the watermark before this batch.
        let mut wm_before: HashMap<i32, Option<i64>> = HashMap::new();
        for (p, st) in states.iter() {
            let p = *p;
            wm_before.insert(p, st.watermark(&|k| holding(k, p)));
        }
        for a in batch {
            let p = a.source.partition;
            let st = states
                .get_mut(&p)
                .ok_or_else(|| PipelineError::Internal(format!("no state for partition {p}")))?;
            let ms = a.record.event_time().timestamp_millis();
            if let Some(Some(wm)) = wm_before.get(&p)
                && ms < wm - self.lateness_ms
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

        // Failing test results first, so a sale in the same batch sees them.
        for a in batch {
            if let Record::ProductTest(t) = &a.record
                && t.result == TestResult::Fail
            {
                let day = biz_date(&t.event_time);
                let before = self.failed_on(tx, path, &t.product_id, &t.batch_no)?;
                tx.execute(
                    "INSERT INTO failed_batches (product_id, batch_no, failed_on) VALUES (?1, ?2, ?3)
                     ON CONFLICT (product_id, batch_no) DO UPDATE SET failed_on = min(failed_on, excluded.failed_on)",
                    params![t.product_id, t.batch_no, date_str(day)],
                )
                .map_err(|e| sql_err(path, "record failed batch", e))?;
                if before.is_some_and(|b| b <= day) {
                    continue;
                }
                // Sales of the batch this partition saw on or after the failing day.
                let st = states
                    .get_mut(&a.source.partition)
                    .ok_or_else(|| PipelineError::Internal("no state for partition".into()))?;
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
        }

        // Sales: batch quality and traceability codes, record by record. The failing day of
        // a batch cannot change during this loop (failures were applied above), so it is
        // looked up once per (product, batch) and batch.
        let mut failed_days: FastMap<(String, String), Option<NaiveDate>> = FastMap::default();
        let mut codes: Vec<(&String, &SalesRecord, &Source)> = Vec::new();
        for a in batch {
            let Record::Sales(s) = &a.record else {
                continue;
            };
            let day = biz_date(&s.event_time);
            let st = states
                .get_mut(&a.source.partition)
                .ok_or_else(|| PipelineError::Internal("no state for partition".into()))?;
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
            let batch_ref = self.reference.batches.get(&key);
            if let Some(b) = batch_ref
                && day > b.expiry_date
            {
                let hit = mk(
                    "expired_batch_sold",
                    b.expiry_date,
                    format!("batch={};expiry={}", s.batch_no, date_str(b.expiry_date)),
                );
                out.events
                    .push(self.event(hit, &s.batch_no, &a.source, s.event_time));
            }
            let failed = match failed_days.get(&key) {
                Some(f) => *f,
                None => {
                    let f = self.failed_on(tx, path, &s.product_id, &s.batch_no)?;
                    failed_days.insert(key.clone(), f);
                    f
                }
            };
            if let Some(f) = failed.filter(|f| day >= *f) {
                let hit = mk(
                    "failed_batch_sold",
                    f,
                    format!("batch={};failed_on={}", s.batch_no, date_str(f)),
                );
                out.events
                    .push(self.event(hit, &s.batch_no, &a.source, s.event_time));
            } else if batch_ref.is_some_and(|b| !b.released) {
                let hit = mk(
                    "failed_batch_sold",
                    day,
                    format!("batch={};not_released", s.batch_no),
                );
                out.events
                    .push(self.event(hit, &s.batch_no, &a.source, s.event_time));
            }
            if let Some(code) = &s.trace_code {
                codes.push((code, s, &a.source));
            }
        }
        // Traceability codes in code order, so consecutive lookups share B-tree pages. The
        // order does not change what is found: a repeat is judged by event time either way,
        // and its event id names the later sale whichever of the two came first.
        codes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (code, s, source) in codes {
            self.trace(tx, path, s, code, source, &mut out)?;
        }

        step(&mut out, "rules");
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
                let st = states
                    .get_mut(&a.source.partition)
                    .ok_or_else(|| PipelineError::Internal("no state for partition".into()))?;
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
        // Window deltas through DataFusion, merged into the windows.
        let deltas = deltas()?;
        for d in deltas {
            let Some(&(source, et)) =
                last_source.get(&(d.enterprise_id.as_str(), d.product_id.as_str(), d.biz_date))
            else {
                continue;
            };
            let key = (d.enterprise_id, d.product_id, d.biz_date);
            let st = states
                .get_mut(&source.partition)
                .ok_or_else(|| PipelineError::Internal("no state for partition".into()))?;
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

        step(&mut out, "windows");
        // Close the days the watermark has passed.
        for (p, st) in states.iter_mut() {
            let p = *p;
            let Some(wm) = st.watermark(&|k| holding(k, p)) else {
                continue;
            };
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
                        .ok_or_else(|| PipelineError::Internal("day end out of range".into()))?;
                    out.events.push(self.event(hit, "", &source, et));
                }
                st.meta.closed_through = Some(d);
                st.prune();
            }
        }
        step(&mut out, "close");
        Ok(out)
    }

    fn trace(
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
            .map_err(|e| PipelineError::Internal(format!("trace code day: {e}")))?;
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
    fn retail(&self, st: &PartitionState, ent: &str, prod: &str, d: NaiveDate) -> f64 {
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
    fn surge(&self, st: &PartitionState, key: &WinKey) -> Option<Hit> {
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
        let mut day = from;
        let base = self.baseline.retail.get(&(ent.clone(), prod.clone()));
        while day < *d {
            let q = self.retail(st, ent, prod, day);
            if q > 0.0 || base.is_some_and(|m| m.contains_key(&day)) {
                sale_days += 1;
            }
            sum += q;
            day += Duration::days(1);
        }
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
        let mean = sum / 28.0;
        let qty = w.retail;
        let fires = active >= t.min_active_days
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
    fn reconcile(&self, st: &PartitionState, d: NaiveDate) -> Vec<Hit> {
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
            rows_to_batch(kind.lake_schema(), &rows, kind.as_str())
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

const WINDOW_DELTA_SQL: &str = include_str!("../../sql/stream/window_delta.sql");

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
            .map_err(|e| PipelineError::query("window_delta.sql", e))?;
        ctx.register_table(kind.as_str(), Arc::new(t))
            .map_err(|e| PipelineError::query("window_delta.sql", e))?;
    }
    let out = collect(&ctx, "window_delta.sql", WINDOW_DELTA_SQL).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use pharmwatch_core::store::Store;

    #[test]
    fn business_days_format_and_parse_like_chrono() {
        let mut d = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap_or_default();
        for _ in 0..12_000 {
            let s = date_str(d);
            assert_eq!(s, d.format("%Y-%m-%d").to_string());
            assert_eq!(parse_date(&s).ok(), Some(d));
            d += Duration::days(1);
        }
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("2026-1a-01").is_err());
        // Anything but `YYYY-MM-DD` is left to chrono, as before.
        assert_eq!(
            parse_date("26-01-01").ok(),
            NaiveDate::parse_from_str("26-01-01", "%Y-%m-%d").ok()
        );
    }

    #[test]
    fn windows_of_a_version_3_store_migrate_and_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pharmwatch.db");
        let day = |s: &str| parse_date(s).unwrap();
        // A store at schema version 3: one row per window.
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            for (v, sql) in pharmwatch_core::store::MIGRATIONS
                .iter()
                .filter(|(v, _)| *v <= 3)
            {
                conn.execute_batch(sql).unwrap();
                conn.execute("INSERT INTO schema_migrations VALUES (?1, 'then')", [v])
                    .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO stream_windows VALUES
                     (0, 'E1', 'P2', '2026-03-01', 5, 2.5, 7, NULL, 0),
                     (0, 'E1', 'P1', '2026-03-01', 3, 0.0, 0, 12, 1),
                     (0, 'E2', 'P1', '2026-03-02', 1, 1.0, 4, NULL, 0),
                     (1, 'E1', 'P1', '2026-03-01', 9, 9.0, 9, 9, 1)",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let tx = store.conn().transaction().unwrap();
        let stored = |tx: &Transaction<'_>, p: i32, d: &str, e: &str| -> Option<String> {
            tx.query_row(
                "SELECT windows FROM stream_window_sets WHERE partition = ?1 AND biz_date = ?2 AND enterprise_id = ?3",
                params![p, d, e],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
        };
        // One row per enterprise-day, products in order.
        assert_eq!(
            stored(&tx, 0, "2026-03-01", "E1").as_deref(),
            Some(r#"[["P1",3,0.0,0,12,1],["P2",5,2.5,7,null,0]]"#)
        );
        let w = |sold, retail, inflow, closing, surge_fired| Window {
            sold,
            retail,
            inflow,
            closing,
            surge_fired,
        };
        let key = |e: &str, p: &str, d: &str| (e.to_string(), p.to_string(), day(d));
        let mut st = PartitionState::load(&tx, &path, 0).unwrap();
        let expected: FastMap<WinKey, Window> = [
            (key("E1", "P1", "2026-03-01"), w(3, 0.0, 0, Some(12), true)),
            (key("E1", "P2", "2026-03-01"), w(5, 2.5, 7, None, false)),
            (key("E2", "P1", "2026-03-02"), w(1, 1.0, 4, None, false)),
        ]
        .into_iter()
        .collect();
        assert_eq!(st.windows, expected);
        assert!(st.dirty.is_empty(), "loading marks nothing to save");
        assert!(st.retail_days["E1"].contains(&day("2026-03-01")));
        assert!(st.retail_days["E2"].contains(&day("2026-03-02")));

        // A changed window and a new one rewrite their enterprise-day only.
        st.window_mut(key("E2", "P1", "2026-03-02")).0.sold += 10;
        *st.window_mut(key("E2", "P0", "2026-03-02")).0 = w(2, 0.0, 3, None, false);
        st.save(&tx, &path).unwrap();
        assert_eq!(
            stored(&tx, 0, "2026-03-02", "E2").as_deref(),
            Some(r#"[["P0",2,0.0,3,null,0],["P1",11,1.0,4,null,0]]"#)
        );
        let again = PartitionState::load(&tx, &path, 0).unwrap();
        assert_eq!(again.windows, st.windows);
        assert_eq!(again.windows.len(), 4);
        // The other partition's windows are its own.
        let other = PartitionState::load(&tx, &path, 1).unwrap();
        assert_eq!(
            other.windows.get(&key("E1", "P1", "2026-03-01")),
            Some(&w(9, 9.0, 9, Some(9), true))
        );
        assert_eq!(other.windows.len(), 1);
    }
}
