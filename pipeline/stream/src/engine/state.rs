//! The state of one partition: its windows per enterprise × product × business day, the
//! enterprise-days that reported inventory, the sales per batch, its event-time maxima per
//! topic, the last closed day, the next offsets and the ownership epoch; loaded from the store
//! when the partition is assigned and saved in the batch's transaction (only what changed).
//!
//! Invariant: a partition is saved only by the instance holding its current ownership epoch
//! ([`PartitionState::owned`] is checked in the same transaction).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};
use pharmwatch_core::db::{OptionalExtension, Transaction, Value};
use pharmwatch_core::params;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::fasthash::{FastMap, FastSet};
use pharmwatch_core::store::sql_err;
use pharmwatch_schemas::EventKind;

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

pub(super) type WinKey = (String, String, NaiveDate);

/// A window as stored in its enterprise-day row: product, sold, retail, inflow, closing,
/// surge fired (0 or 1).
type StoredWindow = (String, i64, f64, i64, Option<i64>, u8);
type StoredWindowRef<'a> = (&'a str, i64, f64, i64, Option<i64>, u8);

/// A batch's sales as stored in its enterprise-day row: product, batch, packages.
type StoredBatchSale = (String, String, i64);
type StoredBatchSaleRef<'a> = (&'a str, &'a str, i64);

/// Packages sold per (product, batch), by business day and enterprise: one entry per
/// enterprise-day however many sales it made (the inverse of `day_batches`), so the failing
/// test of a batch finds its sales from the failing day on without a scan.
type BatchSales = FastMap<(String, String), BTreeMap<(NaiveDate, String), i64>>;

/// Persistent facts of a partition besides its windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionMeta {
    /// Last business day judged (closed).
    pub closed_through: Option<NaiveDate>,
    /// Largest event time seen per event kind, epoch milliseconds.
    pub max_event_ms: BTreeMap<String, i64>,
}

impl PartitionMeta {
    /// Partition `p`'s metadata as the store keeps it (`stream_partitions.meta_json`).
    pub fn parse(json: &str, p: i64, path: &Path) -> Result<Self> {
        serde_json::from_str(json).map_err(|err| {
            CoreError::StoreContent {
                path: path.to_path_buf(),
                reason: format!("partition {p} metadata: {err}"),
            }
            .into()
        })
    }
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
    pub(super) windows: FastMap<WinKey, Window>,
    /// The products with a window per (enterprise, business day): windows are stored one row
    /// per enterprise-day.
    pub(super) ent_days: FastMap<(String, NaiveDate), Vec<String>>,
    pub(super) reported: FastSet<(String, NaiveDate)>,
    pub(super) retail_days: FastMap<String, FastSet<NaiveDate>>,
    pub(super) batch_sales: BatchSales,
    /// Enterprise-days whose windows changed since the last save.
    pub(super) dirty: FastSet<(String, NaiveDate)>,
    pub(super) new_reported: Vec<(String, NaiveDate)>,
    /// Packages sold per (product, batch) of each enterprise-day: saved in the enterprise-day's
    /// row beside its windows.
    pub(super) day_batches: FastMap<(String, NaiveDate), BTreeMap<(String, String), i64>>,
    /// The `closed_through` the stored rows were last pruned at: pruning scans the
    /// partition's rows, so it runs when a day closes, not on every batch.
    pub(super) pruned_at: Option<NaiveDate>,
    /// The event ids this partition accepted, by kind, for its open days (rebuilt from its
    /// lake files when it is loaded) and, within a run, the day before the last closed one:
    /// a second message with an id of these is refused (a repeat, or an id reused with other
    /// content). Not stored: the lake is its record.
    pub seen: FastMap<SeenKey, Seen>,
    /// The watermarks observed that a day may close at once they have settled.
    pub(super) settling: super::settle::Settling,
}

/// An event id as `seen` keeps it: its kind and two 64-bit digests of the id under different
/// seeds (no allocation per record; a false repeat would need both to collide).
pub type SeenKey = (EventKind, u64, u64);

/// Where an accepted event id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Its business day.
    pub day: NaiveDate,
    /// Its offset, when read in this run (`None`: found in the lake at load).
    pub offset: Option<i64>,
    /// A digest of its message bytes, when read in this run.
    pub digest: Option<u64>,
    /// The micro-batch that noted it (0: found in the lake at load).
    pub batch: u64,
}

impl Seen {
    /// The key of event id `id` of `kind`.
    pub fn key(kind: EventKind, id: &str) -> SeenKey {
        use std::hash::BuildHasher as _;
        const A: pharmwatch_core::fasthash::FastState =
            pharmwatch_core::fasthash::FastState::with_seed(0x7068_6172_6d77_6174);
        const B: pharmwatch_core::fasthash::FastState =
            pharmwatch_core::fasthash::FastState::with_seed(0x6576_656e_745f_6964);
        (kind, A.hash_one(id), B.hash_one(id))
    }
}

/// `YYYY-MM-DD`, as the store keeps business days (written for every window and sale, so it
/// skips chrono's format-string interpreter for the common four-digit year).
pub(super) fn date_str(d: NaiveDate) -> String {
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

pub(super) fn parse_date(s: &str) -> pharmwatch_core::db::DbResult<NaiveDate> {
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
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| pharmwatch_core::db::DbError::Conversion {
        column: 0,
        reason: format!("{s:?} is not a date: {e}"),
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
             ON CONFLICT (partition) DO UPDATE SET epoch = stream_partitions.epoch + 1",
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
        s.meta = PartitionMeta::parse(&meta, i64::from(p), path)?;
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
                "SELECT enterprise_id, biz_date, windows, batches FROM stream_window_sets
                 WHERE partition = ?1",
            )
            .map_err(e("load windows"))?;
        for row in st
            .query_map([p], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_date(&r.get::<_, String>(1)?)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(e("load windows"))?
        {
            let (ent, day, json, batches) = row.map_err(e("load windows"))?;
            let content = |what: &str, err: serde_json::Error| CoreError::StoreContent {
                path: path.to_path_buf(),
                reason: format!("partition {p}: {what} of {ent} on {}: {err}", date_str(day)),
            };
            let set: Vec<StoredWindow> =
                serde_json::from_str(&json).map_err(|err| content("windows", err))?;
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
            let sales: Vec<StoredBatchSale> =
                serde_json::from_str(&batches).map_err(|err| content("batch sales", err))?;
            for (prod, batch, q) in sales {
                s.add_batch_sale(&ent, day, &prod, &batch, q);
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
        self.save_windows(tx, path)?;
        let (mut ent, mut day) = (Vec::new(), Vec::new());
        for (e, d) in self.new_reported.drain(..) {
            ent.push(Value::Text(e));
            day.push(Value::Text(date_str(d)));
        }
        let part = |n: usize| vec![Value::Integer(i64::from(p)); n];
        tx.insert_rows(
            "stream_reported",
            &[
                ("partition", part(ent.len())),
                ("enterprise_id", ent),
                ("biz_date", day),
            ],
            "ON CONFLICT DO NOTHING",
        )
        .map_err(e("save reported"))?;
        let (topics, offsets): (Vec<Value>, Vec<Value>) = self
            .offsets
            .iter()
            .map(|(t, o)| (Value::Text(t.clone()), Value::Integer(*o)))
            .unzip();
        tx.insert_rows(
            "stream_offsets",
            &[
                ("topic", topics),
                ("partition", part(offsets.len())),
                ("next_offset", offsets),
            ],
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
        )
        .map_err(e("save offsets"))?;
        let meta = serde_json::to_string(&self.meta)
            .map_err(|err| CoreError::Internal(err.to_string()))?;
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
            let keep_seen = c - Duration::days(1);
            self.seen.retain(|_, s| s.day >= keep_seen);
            // Windows older than the surge baseline (28 days), with the batch sales kept
            // beside them, are no longer needed.
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
        }
        Ok(())
    }

    /// Writes the enterprise-days whose windows or batch sales changed (one row each, both as
    /// JSON); an enterprise-day left without either is deleted.
    fn save_windows(&mut self, tx: &Transaction<'_>, path: &Path) -> Result<()> {
        let e = |what: &'static str| move |err| sql_err(path, what, err);
        let p = i64::from(self.partition);
        let mut dirty: Vec<(String, NaiveDate)> = self.dirty.drain().collect();
        dirty.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let (mut days, mut ents, mut sets, mut batches) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
            let sales: Vec<StoredBatchSaleRef<'_>> = self
                .day_batches
                .get(&(ent.clone(), day))
                .into_iter()
                .flatten()
                .map(|((prod, batch), q)| (prod.as_str(), batch.as_str(), *q))
                .collect();
            if set.is_empty() && sales.is_empty() {
                tx.execute(
                    "DELETE FROM stream_window_sets WHERE partition = ?1 AND biz_date = ?2
                         AND enterprise_id = ?3",
                    params![p, date_str(day), ent],
                )
                .map_err(e("save windows"))?;
            } else {
                let internal = |err: serde_json::Error| CoreError::Internal(err.to_string());
                days.push(Value::Text(date_str(day)));
                ents.push(Value::Text(ent));
                sets.push(Value::Text(serde_json::to_string(&set).map_err(internal)?));
                batches.push(Value::Text(
                    serde_json::to_string(&sales).map_err(internal)?,
                ));
            }
        }
        tx.insert_rows(
            "stream_window_sets",
            &[
                ("partition", vec![Value::Integer(p); days.len()]),
                ("biz_date", days),
                ("enterprise_id", ents),
                ("windows", sets),
                ("batches", batches),
            ],
            "ON CONFLICT (partition, biz_date, enterprise_id) DO UPDATE SET
                 windows = excluded.windows, batches = excluded.batches",
        )
        .map_err(e("save windows"))?;
        Ok(())
    }

    /// How many entries each part of the partition's in-memory state holds, by the names of
    /// the `part` label of `pharmwatch_stream_state_entries`: what an operator watches to see
    /// the state bounded by the days it serves (29 days of windows, the open days' event ids).
    pub fn entries(&self) -> [(&'static str, usize); 6] {
        [
            ("windows", self.windows.len()),
            ("enterprise_days", self.ent_days.len()),
            ("reported", self.reported.len()),
            (
                "batch_sales",
                self.batch_sales.values().map(BTreeMap::len).sum::<usize>(),
            ),
            (
                "day_batches",
                self.day_batches.values().map(BTreeMap::len).sum::<usize>(),
            ),
            ("event_ids", self.seen.len()),
        ]
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

    /// Records `q` packages of (`prod`, `batch`) sold by `ent` on `day`, marked to be saved.
    pub(super) fn add_batch_sale(
        &mut self,
        ent: &str,
        day: NaiveDate,
        prod: &str,
        batch: &str,
        q: i64,
    ) {
        let key = (prod.to_string(), batch.to_string());
        *self
            .batch_sales
            .entry(key.clone())
            .or_default()
            .entry((day, ent.to_string()))
            .or_default() += q;
        let day_key = (ent.to_string(), day);
        *self
            .day_batches
            .entry(day_key.clone())
            .or_default()
            .entry(key)
            .or_default() += q;
        self.dirty.insert(day_key);
    }

    /// The window of `key` (created empty when new), marked to be saved; with the key back.
    pub(super) fn window_mut(&mut self, key: WinKey) -> (&mut Window, WinKey) {
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

    pub(super) fn prune(&mut self) {
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
        self.day_batches.retain(|k, _| k.1 >= keep_from);
        for v in self.batch_sales.values_mut() {
            *v = v.split_off(&(keep_from, String::new()));
        }
        self.batch_sales.retain(|_, v| !v.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharmwatch_core::store::Store;

    #[test]
    fn a_partition_taken_over_on_another_connection_fences_its_old_owner() {
        // Two instances (two connections, as two hosts have) and one partition: the second
        // takes it over; the first's next batch finds its epoch stale and must not commit.
        let dir = tempfile::tempdir().unwrap();
        let path = pharmwatch_core::db::scratch_store(dir.path());
        let (mut old, mut new) = (Store::open(&path).unwrap(), Store::open(&path).unwrap());
        let p = 3;
        let first = {
            let tx = old.conn().transaction().unwrap();
            let st = PartitionState::load(&tx, &path, p).unwrap();
            tx.commit().unwrap();
            st
        };
        let second = {
            let tx = new.conn().transaction().unwrap();
            let st = PartitionState::load(&tx, &path, p).unwrap();
            tx.commit().unwrap();
            st
        };
        assert_eq!((first.epoch, second.epoch), (1, 2));
        let tx = old.conn().transaction().unwrap();
        assert!(!first.owned(&tx, &path).unwrap(), "the zombie is fenced");
        drop(tx);
        let tx = new.conn().transaction().unwrap();
        assert!(second.owned(&tx, &path).unwrap(), "the new owner commits");
        drop(tx);
        let epoch: i64 = new
            .conn_ref()
            .query_row(
                "SELECT epoch FROM stream_partitions WHERE partition = ?1",
                [p],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(epoch, 2);
    }

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
            let conn = pharmwatch_core::db::Conn::open(&path).unwrap();
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

    #[test]
    fn batch_sales_of_a_version_50_store_move_into_the_window_sets_and_survive_a_save() {
        // On either backend: a store at version 50 with batch sales in their own table (one
        // enterprise-day without windows), opened at the current version.
        let dir = tempfile::tempdir().unwrap();
        let path = pharmwatch_core::db::scratch_store(dir.path());
        let day = |s: &str| parse_date(s).unwrap();
        {
            let conn = pharmwatch_core::db::Conn::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            let migrations = match conn.backend() {
                pharmwatch_core::db::Backend::Sqlite => pharmwatch_core::store::MIGRATIONS,
                pharmwatch_core::db::Backend::Postgres => pharmwatch_core::store::PG_MIGRATIONS,
            };
            for (v, sql) in migrations.iter().filter(|(v, _)| *v <= 50) {
                conn.execute_batch(sql).unwrap();
                conn.execute("INSERT INTO schema_migrations VALUES (?1, 'then')", [v])
                    .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO stream_window_sets VALUES
                     (0, '2026-03-01', 'E1', '[[\"P1\",3,3.0,0,null,0]]');
                 INSERT INTO stream_batch_sales VALUES
                     (0, 'P1', 'B2', 'E1', '2026-03-01', 2),
                     (0, 'P1', 'B1', 'E1', '2026-03-01', 1),
                     (0, 'P9', 'B9', 'E2', '2026-03-02', 7),
                     (1, 'P1', 'B1', 'E1', '2026-03-01', 5)",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let tx = store.conn().transaction().unwrap();
        let batches = |tx: &Transaction<'_>, p: i32, d: &str, e: &str| -> String {
            let json: String = tx
                .query_row(
                    "SELECT batches FROM stream_window_sets WHERE partition = ?1 AND biz_date = ?2 AND enterprise_id = ?3",
                    params![p, d, e],
                    |r| r.get(0),
                )
                .unwrap();
            let v: Vec<StoredBatchSale> = serde_json::from_str(&json).unwrap();
            serde_json::to_string(&v).unwrap()
        };
        assert_eq!(
            batches(&tx, 0, "2026-03-01", "E1"),
            r#"[["P1","B1",1],["P1","B2",2]]"#
        );
        assert_eq!(batches(&tx, 0, "2026-03-02", "E2"), r#"[["P9","B9",7]]"#);
        assert_eq!(batches(&tx, 1, "2026-03-01", "E1"), r#"[["P1","B1",5]]"#);
        let gone: Option<i64> = tx
            .query_row("SELECT COUNT(*) FROM stream_batch_sales", [], |r| r.get(0))
            .optional()
            .ok()
            .flatten();
        assert_eq!(gone, None, "stream_batch_sales is dropped");
        drop(tx);
        let tx = store.conn().transaction().unwrap();
        let mut st = PartitionState::load(&tx, &path, 0).unwrap();
        let sales = |st: &PartitionState, p: &str, b: &str| {
            st.batch_sales
                .get(&(p.to_string(), b.to_string()))
                .into_iter()
                .flatten()
                .map(|((d, e), q)| (e.clone(), *d, *q))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            sales(&st, "P1", "B2"),
            vec![("E1".to_string(), day("2026-03-01"), 2)]
        );
        assert_eq!(
            sales(&st, "P9", "B9"),
            vec![("E2".to_string(), day("2026-03-02"), 7)]
        );
        assert!(st.dirty.is_empty(), "loading marks nothing to save");
        // A new sale of a known batch adds to its enterprise-day, and survives a save and load.
        st.add_batch_sale("E1", day("2026-03-01"), "P1", "B1", 4);
        assert_eq!(
            sales(&st, "P1", "B1"),
            vec![("E1".to_string(), day("2026-03-01"), 5)],
            "one entry per enterprise-day, however many sales"
        );
        st.save(&tx, &path).unwrap();
        assert_eq!(
            batches(&tx, 0, "2026-03-01", "E1"),
            r#"[["P1","B1",5],["P1","B2",2]]"#
        );
        let again = PartitionState::load(&tx, &path, 0).unwrap();
        assert_eq!(again.day_batches, st.day_batches);
        assert_eq!(
            again
                .windows
                .get(&("E1".to_string(), "P1".to_string(), day("2026-03-01"))),
            Some(&Window {
                sold: 3,
                retail: 3.0,
                ..Window::default()
            })
        );
    }
}
