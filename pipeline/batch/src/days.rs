//! The day store: what nights computed, per business day, so that a night computes only its
//! own day (and the days late records changed) and reads the others back.
//!
//! ```text
//! OUT/days/manifest.json              each stored day's key; the lake files' spans
//! OUT/days/hits/date=D.parquet        the rule hits of day D (the indicator queries' columns)
//! OUT/days/features/date=D.parquet    the model's feature rows of day D
//! OUT/days/<table>/date=D.parquet     day D's rows of a day table: the rules' feature tables
//!                                     (`retail_daily`, `market_daily`, `reporting_daily`) and
//!                                     the model's (`sales_daily`, `inventory_days`,
//!                                     `enterprise_flows`)
//! ```
//!
//! A day's key is a digest of everything its result depends on: the rule version, thresholds
//! and SQL of the indicators (hits) or of the feature query (features), the reference tables'
//! identities, and the identities of the lake files holding rows of the days it reads —
//! `[D − 60, D]` for hits (product tests: every day up to D), `[D − 28, D]` for features and
//! D alone for a day table's rows ([`pharmwatch_core::lake_index`] says which days a file
//! holds; a day table built from the same day's rows of others — `enterprise_flows` sums
//! `sales_daily` — carries their SQL too). A stored day whose key is
//! unchanged is read back; any other day is computed and stored.
//!
//! Invariants: a day's result does not depend on the range a query ran over (each indicator
//! and feature judges a day against its own look-back only), so a day computed alone, or with
//! others, or read back gives the same rows, and an incremental night writes what a night
//! from scratch writes. Files are written whole (temporary name, then rename) and the manifest
//! last, so a run that stops half-way leaves days that are computed again, never wrong ones.
//! Days before the look-back of the run's first day are removed. A compaction of the lake
//! changes the files but not their rows: [`DayStore::rekey`] carries each stored day over to
//! its key of the compacted files, so the next night does not compute its window again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
    StringViewArray, UInt64Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::datasource::MemTable;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter,
};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use pharmwatch_core::anomaly::{self, DAY_TABLES, FEATURE_SQL, FEATURES, FeatureTable};
use pharmwatch_core::baseline::{StoredDay, TRACE_DAY_SQL, TRACE_DIR};
use pharmwatch_core::error::CoreError;
use pharmwatch_core::fasthash::FastMap;
use pharmwatch_core::indicators::{self, Hit, LOOKBACK_DAYS, RULE_VERSION, Thresholds};
use pharmwatch_core::lake::write_parquet;
use pharmwatch_core::lake_index::{self, LakeFile, Span};
use pharmwatch_core::query::{lanes, result_schema, run_sql, session};
use pharmwatch_core::remote_lake::LakeSource;
use pharmwatch_schemas::EventKind;

use crate::error::Result;

/// Directory of the day store inside a nightly output directory.
pub const DAYS_DIR: &str = "days";
/// Days of lake data a day's features read (the day and the 28 before it).
pub const FEATURE_LOOKBACK_DAYS: i64 = 28;
/// Version of the store's layout and keys; a store of another version is computed afresh.
const VERSION: u32 = 2;
const MANIFEST: &str = "manifest.json";

/// What a day's result is: rule hits, model features, or a feature table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The indicator queries' hits.
    Hits,
    /// The anomaly model's feature rows.
    Features,
    /// A feature table of the rules ([`indicators::FEATURES`]), by name.
    Table(&'static str),
}

impl Part {
    fn dir(self) -> &'static str {
        match self {
            Self::Hits => "hits",
            Self::Features => "features",
            Self::Table(name) => name,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// Keys of the stored hit days.
    hits: BTreeMap<NaiveDate, String>,
    /// Keys of the stored feature days.
    features: BTreeMap<NaiveDate, String>,
    /// Keys of the stored days of each feature table.
    #[serde(default)]
    tables: BTreeMap<String, BTreeMap<NaiveDate, String>>,
    /// Spans of lake files read from their footers, by `url|identity`.
    spans: BTreeMap<String, Span>,
}

/// The lake's files per event kind, identified, with the days each holds.
#[derive(Debug, Default)]
pub struct LakeDays {
    /// Per day, a digest of the files (of every kind but product tests) holding its rows.
    prints: BTreeMap<NaiveDate, String>,
    /// Per day, a digest of the sales files holding its rows (the trace-code days are keyed
    /// on it: they read sales only).
    sales: BTreeMap<NaiveDate, String>,
    /// Product-test files with their first day (a day's hits read every test up to it).
    product_tests: Vec<(NaiveDate, String)>,
    /// Identities of the reference tables and any other input every day depends on.
    global: String,
}

impl LakeDays {
    /// Indexes `files` (per event kind, as the run registered them) and the reference tables
    /// `references`; spans of files the store has seen are not read again.
    pub async fn index(
        store: &mut DayStore,
        source: &LakeSource,
        files: &BTreeMap<EventKind, Vec<String>>,
        references: &[String],
    ) -> Result<Self> {
        let mut by_day: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
        let mut sales_by_day: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
        let mut product_tests = Vec::new();
        for (kind, urls) in files {
            for file in lake_index::identify(source, urls.clone()).await? {
                let span = store.span(source, &file).await?;
                let entry = format!("{}|{}|{}", kind.as_str(), file.url, file.identity);
                if *kind == EventKind::ProductTest {
                    product_tests.push((span.first, entry));
                    continue;
                }
                // A file without statistics may hold any earlier day: it is part of every
                // day of the range the run reads.
                let first = span.first.max(files_floor(files));
                let mut d = first;
                while d <= span.last {
                    by_day.entry(d).or_default().push(entry.clone());
                    if *kind == EventKind::Sales {
                        sales_by_day.entry(d).or_default().push(entry.clone());
                    }
                    d += Duration::days(1);
                }
            }
        }
        let prints = digest_days(by_day);
        let sales = digest_days(sales_by_day);
        product_tests.sort();
        let mut global = Vec::new();
        for r in references {
            let identity = match source {
                LakeSource::Bucket(b) if r.starts_with("s3://") => b.identity_of_url(r).await?,
                _ => lake_index::local_identity(Path::new(r))?,
            };
            global.push(format!("{r}|{identity}"));
        }
        Ok(Self {
            prints,
            sales,
            product_tests,
            global: digest(global.iter().map(String::as_str)),
        })
    }

    /// The key of `part` for day `day` under thresholds `t`.
    pub fn key(&self, part: Part, day: NaiveDate, t: &Thresholds) -> String {
        let mut parts: Vec<String> = vec![format!("v{VERSION}"), self.global.clone()];
        let lookback = match part {
            Part::Hits => {
                parts.push(RULE_VERSION.to_string());
                parts.extend(t.tokens().into_iter().map(|(k, v)| format!("{k}={v}")));
                for (name, sql) in indicators::FEATURES.iter().chain(indicators::QUERIES) {
                    parts.push(format!("{name}:{}", digest([*sql])));
                }
                parts.extend(
                    self.product_tests
                        .iter()
                        .filter(|(first, _)| *first <= day)
                        .map(|(_, e)| e.clone()),
                );
                LOOKBACK_DAYS
            }
            Part::Features => {
                parts.push(digest([FEATURE_SQL]));
                for (name, sql) in DAY_TABLES {
                    parts.push(format!("{name}:{}", digest([*sql])));
                }
                FEATURE_LOOKBACK_DAYS
            }
            Part::Table(name) => {
                parts.push(format!("{name}:{}", digest([table_sql(name)])));
                // A day table built from others of the same day (the model's later stages)
                // changes with their SQL too.
                for (input, sql) in anomaly::day_table_inputs(name) {
                    parts.push(format!("{input}:{}", digest([*sql])));
                }
                // A day table's rows of a day read that day's records only (the trace-code
                // days: its sales).
                let files = if name == TRACE_DIR {
                    &self.sales
                } else {
                    &self.prints
                };
                parts.push(format!(
                    "{day}={}",
                    files.get(&day).map_or("", String::as_str)
                ));
                return digest(parts.iter().map(String::as_str));
            }
        };
        let mut d = day - Duration::days(lookback);
        while d <= day {
            if let Some(p) = self.prints.get(&d) {
                parts.push(format!("{d}={p}"));
            }
            d += Duration::days(1);
        }
        digest(parts.iter().map(String::as_str))
    }
}

/// The trace-code day table: the first sale of every traceability code sold on a day
/// (`sql/stream/baseline_trace.sql`), read by the trace-duplicate rule for the days before
/// those it judges and handed to the stream service in its baseline.
const TRACE: &[(&str, &str)] = &[(TRACE_DIR, TRACE_DAY_SQL)];

/// The coded sales of the days the trace-duplicate rule judges.
const TRACE_JUDGED_SQL: &str = include_str!("../../sql/features/trace_judged.sql");

/// The day tables the store keeps: the rules' feature tables, the model's day tables and the
/// trace-code days.
fn day_tables() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    indicators::FEATURES.iter().chain(DAY_TABLES).chain(TRACE)
}

/// The SQL of day table `name` (empty for a name of no table).
fn table_sql(name: &str) -> &'static str {
    day_tables()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, sql)| *sql)
}

/// Each day's digest of its sorted file entries.
fn digest_days(by_day: BTreeMap<NaiveDate, Vec<String>>) -> BTreeMap<NaiveDate, String> {
    by_day
        .into_iter()
        .map(|(d, mut entries)| {
            entries.sort();
            (d, digest(entries.iter().map(String::as_str)))
        })
        .collect()
}

/// The earliest partition any kind's files lie in: a file of unknown span counts from there.
fn files_floor(files: &BTreeMap<EventKind, Vec<String>>) -> NaiveDate {
    files
        .values()
        .flatten()
        .filter_map(|u| lake_index::partition_of(u))
        .min()
        .unwrap_or(NaiveDate::MIN)
        - Duration::days(LOOKBACK_DAYS)
}

/// SHA-256 of the parts, each followed by a newline, in hex.
fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(b"\n");
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The day store of one output directory.
#[derive(Debug)]
pub struct DayStore {
    dir: PathBuf,
    manifest: Manifest,
}

impl DayStore {
    /// Opens (or starts) the store of output directory `out`; a manifest of another version
    /// or one that cannot be read is started afresh (every day is computed again).
    pub fn open(out: &Path) -> Self {
        let dir = out.join(DAYS_DIR);
        let manifest = std::fs::read_to_string(dir.join(MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
            .filter(|m| m.version == VERSION)
            .unwrap_or(Manifest {
                version: VERSION,
                ..Manifest::default()
            });
        Self { dir, manifest }
    }

    async fn span(&mut self, source: &LakeSource, file: &LakeFile) -> Result<Span> {
        if file.holds_its_partition_only() {
            return Ok(lake_index::span(source, file).await?);
        }
        let id = format!("{}|{}", file.url, file.identity);
        if let Some(s) = self.manifest.spans.get(&id) {
            return Ok(*s);
        }
        let s = lake_index::span(source, file).await?;
        self.manifest.spans.insert(id, s);
        Ok(s)
    }

    fn keys(&self, part: Part) -> Option<&BTreeMap<NaiveDate, String>> {
        match part {
            Part::Hits => Some(&self.manifest.hits),
            Part::Features => Some(&self.manifest.features),
            Part::Table(name) => self.manifest.tables.get(name),
        }
    }

    fn keys_mut(&mut self, part: Part) -> &mut BTreeMap<NaiveDate, String> {
        match part {
            Part::Hits => &mut self.manifest.hits,
            Part::Features => &mut self.manifest.features,
            Part::Table(name) => self.manifest.tables.entry(name.to_string()).or_default(),
        }
    }

    fn path(&self, part: Part, day: NaiveDate) -> PathBuf {
        self.dir
            .join(part.dir())
            .join(format!("date={}.parquet", day.format("%Y-%m-%d")))
    }

    /// Whether day `day` of `part` is stored under `key`.
    pub fn has(&self, part: Part, day: NaiveDate, key: &str) -> bool {
        self.keys(part)
            .and_then(|keys| keys.get(&day))
            .is_some_and(|k| k == key)
            && self.path(part, day).exists()
    }

    /// Reads the stored hits of `day`.
    pub fn read_hits(&self, day: NaiveDate) -> Result<Vec<Hit>> {
        let mut out = Vec::new();
        for b in read_batches(&self.path(Part::Hits, day))? {
            out.extend(indicators::batch_to_hits("days/hits", &b)?);
        }
        Ok(out)
    }

    /// Stores the hits of `day` under `key`.
    pub fn write_hits(&mut self, day: NaiveDate, key: String, hits: &[Hit]) -> Result<()> {
        let (schema, batch) = hits_batch(hits)?;
        write_parquet(&self.path(Part::Hits, day), schema, &[batch])?;
        self.keys_mut(Part::Hits).insert(day, key);
        Ok(())
    }

    /// Reads the stored feature rows of `day` (in the feature query's order).
    pub fn read_features(&self, day: NaiveDate) -> Result<FeatureTable> {
        let what = "days/features";
        let mut t = FeatureTable::default();
        for b in read_batches(&self.path(Part::Features, day))? {
            let text = |c| -> Result<Vec<String>> {
                Ok(indicators::strings(what, &b, c)?
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect())
            };
            t.enterprise_id.extend(text("enterprise_id")?);
            t.segment.extend(text("segment")?);
            t.date.extend(indicators::dates(what, &b, "biz_date")?);
            let cols = FEATURES
                .iter()
                .map(|f| indicators::floats(what, &b, f))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            t.values
                .extend(pharmwatch_core::table::row_major(&cols, b.num_rows()));
        }
        Ok(t)
    }

    /// Stores the feature rows of `day` (the rows of `table` on that day) under `key`.
    pub fn write_features(
        &mut self,
        day: NaiveDate,
        key: String,
        table: &FeatureTable,
    ) -> Result<()> {
        let rows: Vec<usize> = (0..table.len()).filter(|&i| table.date[i] == day).collect();
        let (schema, batch) = features_batch(table, &rows)?;
        write_parquet(&self.path(Part::Features, day), schema, &[batch])?;
        self.keys_mut(Part::Features).insert(day, key);
        Ok(())
    }

    /// After the lake's files changed without their rows changing (a compaction): every day
    /// stored under its key of `before` (the index of the files before) is given its key of
    /// `after`, so the next night reads it back instead of computing it again. A day stored
    /// under another key stays as it is (it is computed again when next needed). Returns the
    /// days re-keyed.
    pub fn rekey(&mut self, before: &LakeDays, after: &LakeDays, t: &Thresholds) -> usize {
        let tables = day_tables().map(|(n, _)| Part::Table(n));
        let mut rekeyed = 0;
        for part in [Part::Hits, Part::Features].into_iter().chain(tables) {
            let stored: Vec<(NaiveDate, String)> = self
                .keys(part)
                .map(|keys| keys.iter().map(|(d, k)| (*d, k.clone())).collect())
                .unwrap_or_default();
            for (d, key) in stored {
                if key == before.key(part, d, t) {
                    self.keys_mut(part).insert(d, after.key(part, d, t));
                    rekeyed += 1;
                }
            }
        }
        rekeyed
    }

    /// Removes the days before `keep_from` and the spans of files no longer listed, then writes
    /// the manifest (last, so it names only files written whole).
    pub fn commit(&mut self, keep_from: NaiveDate, listed: &BTreeSet<String>) -> Result<()> {
        let tables = day_tables().map(|(n, _)| Part::Table(n));
        for part in [Part::Hits, Part::Features].into_iter().chain(tables) {
            let old: Vec<NaiveDate> = self
                .keys(part)
                .map(|keys| keys.range(..keep_from).map(|(d, _)| *d).collect())
                .unwrap_or_default();
            for d in old {
                self.keys_mut(part).remove(&d);
                let path = self.path(part, d);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CoreError::io(&path, e).into()),
                }
            }
        }
        self.manifest
            .spans
            .retain(|id, _| id.split('|').next().is_some_and(|u| listed.contains(u)));
        std::fs::create_dir_all(&self.dir).map_err(|e| CoreError::io(&self.dir, e))?;
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(&self.manifest)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(|e| CoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| CoreError::io(&path, e))?;
        Ok(())
    }
}

/// Registers the day tables `tables`, each `(table, from)` over the days `from ..= to`, on
/// `ctx` from the day store: each day's rows read back when stored under its key, else computed
/// (one query per day, reading that day's records) and stored first. The tables' queries read
/// the lake and nothing of one another, so the missing days of all of them are computed
/// together, as many at a time as there are cores; then each table is read back and
/// registered. Returns each table's seconds, in the order given: its share of the
/// computing (its queries' wall times, which overlap other tables') and its reading back.
pub async fn register_day_tables(
    ctx: &SessionContext,
    days: &mut (DayStore, LakeDays),
    tables: &[((&'static str, &'static str), NaiveDate)],
    to: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<f64>> {
    let mut schemas = Vec::with_capacity(tables.len());
    for (table, _) in tables {
        schemas.push(day_table_schema(ctx, *table, to, t).await?);
    }
    let (store, index) = days;
    let wanted = tables
        .iter()
        .map(|((name, _), from)| (Part::Table(name), from.iter_days().take_while(|d| *d <= to)));
    let done = store_days_of(store, index, wanted, t, |i, day, path| {
        let ((name, sql), _) = tables[i];
        let schema = &schemas[i];
        async move {
            let text = indicators::render_feature_days(sql, day, day, t)?;
            let batches = fit_schema(name, schema, run_sql(ctx, name, &text).await?)?;
            Ok(write_parquet(&path, schema.clone(), &batches)?)
        }
    })
    .await?;
    // Every day is read from its file, computed just now or not: a query's result can hold on
    // to far larger buffers than its rows (text views into what it read), and a day read back
    // is the same whichever night computed it. The files are decoded on every core, a lane's
    // days becoming a partition of the table, held in memory as `CREATE TABLE … AS` would
    // hold it (several queries join and window over it).
    let mut seconds = Vec::with_capacity(tables.len());
    for (i, (((name, _), _), stored)) in tables.iter().zip(done).enumerate() {
        let started = Instant::now();
        let (computing, stored) = (stored.seconds, stored.listed);
        let schema = schemas[i].clone();
        let partitions = on_lanes(&stored, |day| {
            fit_schema(name, &schema, read_batches(&day.path)?)
        })?;
        ctx.deregister_table(*name)
            .map_err(|e| CoreError::query(name, e))?;
        let table = MemTable::try_new(schema, partitions).map_err(|e| CoreError::query(name, e))?;
        ctx.register_table(*name, Arc::new(table))
            .map_err(|e| CoreError::query(name, e))?;
        seconds.push(computing + started.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

/// The schema of day table `name` (SQL `sql`) as its query gives it.
async fn day_table_schema(
    ctx: &SessionContext,
    (name, sql): (&'static str, &'static str),
    day: NaiveDate,
    t: &Thresholds,
) -> Result<Arc<Schema>> {
    Ok(ctx
        .sql(&indicators::render_feature_days(sql, day, day, t)?)
        .await
        .map_err(|e| CoreError::query(name, e))?
        .schema()
        .inner()
        .clone())
}

/// The days `first ..= last` of day table `name` in the store: each day's file kept when
/// stored under its key, else computed (one query reading that day's records; the missing
/// days one per core at a time, each query independent of the others) and stored. Returns
/// the days and how many were computed.
async fn store_table_days(
    ctx: &SessionContext,
    (store, index): &mut (DayStore, LakeDays),
    (name, sql): (&'static str, &'static str),
    schema: &Arc<Schema>,
    first: NaiveDate,
    last: NaiveDate,
    t: &Thresholds,
) -> Result<(Vec<StoredDay>, usize)> {
    let days = first.iter_days().take_while(|d| *d <= last);
    store_days(
        store,
        index,
        Part::Table(name),
        days,
        t,
        |day, path| async move {
            let text = indicators::render_feature_days(sql, day, day, t)?;
            let batches = fit_schema(name, schema, run_sql(ctx, name, &text).await?)?;
            Ok(write_parquet(&path, schema.clone(), &batches)?)
        },
    )
    .await
}

/// The stored days `days` of `part`: those whose file is not stored under its key computed by
/// `compute(day, path)` (which writes the file; the missing days one per core at a time) and
/// their keys recorded once all are written. Returns the days and how many were computed.
async fn store_days<F, Fut>(
    store: &mut DayStore,
    index: &LakeDays,
    part: Part,
    days: impl Iterator<Item = NaiveDate>,
    t: &Thresholds,
    compute: F,
) -> Result<(Vec<StoredDay>, usize)>
where
    F: Fn(NaiveDate, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let done = store_days_of(store, index, [(part, days)], t, |_, day, path| {
        compute(day, path)
    })
    .await?;
    Ok(done
        .into_iter()
        .next()
        .map_or_else(Default::default, |d| (d.listed, d.computed)))
}

/// One part's days as [`store_days_of`] left them.
#[derive(Debug)]
struct PartDays {
    /// What the days are.
    part: Part,
    /// The days asked for, each with its file and key.
    listed: Vec<StoredDay>,
    /// How many of them were computed.
    computed: usize,
    /// Wall time of their computations (which overlap other days' and parts').
    seconds: f64,
}

/// [`store_days`] for several parts at once: the missing days of all of them computed
/// together by `compute(i, day, path)` (`i` the part's place in `parts`; one per core at a
/// time), their keys recorded once all are written. Returns each part's days.
async fn store_days_of<D, F, Fut>(
    store: &mut DayStore,
    index: &LakeDays,
    parts: impl IntoIterator<Item = (Part, D)>,
    t: &Thresholds,
    compute: F,
) -> Result<Vec<PartDays>>
where
    D: Iterator<Item = NaiveDate>,
    F: Fn(usize, NaiveDate, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::stream::{self, StreamExt, TryStreamExt};
    let mut done: Vec<PartDays> = parts
        .into_iter()
        .map(|(part, days)| PartDays {
            part,
            listed: days
                .map(|day| StoredDay {
                    day,
                    path: store.path(part, day),
                    key: index.key(part, day, t),
                })
                .collect(),
            computed: 0,
            seconds: 0.0,
        })
        .collect();
    let stored: &DayStore = store;
    let missing: Vec<(usize, &StoredDay)> = done
        .iter()
        .enumerate()
        .flat_map(|(i, of_part)| {
            of_part
                .listed
                .iter()
                .filter(move |s| !stored.has(of_part.part, s.day, &s.key))
                .map(move |s| (i, s))
        })
        .collect();
    let compute = &compute;
    let took: Vec<(usize, NaiveDate, String, f64)> =
        stream::iter(missing.into_iter().map(|(i, s)| async move {
            let started = Instant::now();
            compute(i, s.day, s.path.clone()).await?;
            Ok::<_, crate::error::BatchError>((
                i,
                s.day,
                s.key.clone(),
                started.elapsed().as_secs_f64(),
            ))
        }))
        .buffer_unordered(lanes())
        .try_collect()
        .await?;
    for (i, day, key, secs) in took {
        store.keys_mut(done[i].part).insert(day, key);
        done[i].computed += 1;
        done[i].seconds += secs;
    }
    Ok(done)
}

/// The days `first ..= last` of day table `table` in the store (see [`store_table_days`]),
/// for the stream baseline to link.
pub async fn table_days(
    ctx: &SessionContext,
    days: &mut (DayStore, LakeDays),
    table: (&'static str, &'static str),
    first: NaiveDate,
    last: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<StoredDay>> {
    let schema = day_table_schema(ctx, table, last, t).await?;
    Ok(store_table_days(ctx, days, table, &schema, first, last, t)
        .await?
        .0)
}

/// The trace-code days `first ..= last` that the lake holds sales of: each day's file kept in
/// the store when stored under its key, else computed on `ctx` (the first sale of every code
/// sold that day, over the day's sales; the missing days one per core at a time) and stored.
pub async fn trace_days(
    ctx: &SessionContext,
    (store, index): &mut (DayStore, LakeDays),
    first: NaiveDate,
    last: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<StoredDay>> {
    let days = first
        .iter_days()
        .take_while(|d| *d <= last)
        .filter(|d| index.sales.contains_key(d));
    let part = Part::Table(TRACE_DIR);
    let (listed, _) = store_days(store, index, part, days, t, |day, path| async move {
        write_trace_day(ctx, &path, day, t).await
    })
    .await?;
    Ok(listed)
}

/// A context whose one table `sales` is what `trace_duplicate.sql` needs to judge the days
/// `from ..= to`: the judged days' coded sales (from the lake tables of `ctx`) and, of each day
/// of the look-back before `from`, the first sales of the same codes (from the trace-code days,
/// each computed once) — of both, only the rows whose code may be sold more than once.
/// Exact: the rule relates the sales of one code only, and of an earlier day it asks only
/// whether a sale came before and which came first — what a day's first sale says; a code
/// with one sale in all of this has no earlier sale to be a repeat of.
///
/// Computes and stores the judged days' trace-code days on the way, from their coded sales
/// (all a day's query reads), so the lake is not read again.
pub async fn trace_sales(
    ctx: &SessionContext,
    days: &mut (DayStore, LakeDays),
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
) -> Result<SessionContext> {
    let what = "trace_judged.sql";
    let sql = indicators::render(TRACE_JUDGED_SQL, from, to, t)?;
    let judged = run_sql(ctx, what, &sql).await?;
    let schema = result_schema(ctx, what, &sql, &judged).await?;
    let whole = sales_context(what, &schema, judged.clone())?;
    trace_days(&whole, days, from, to, t).await?;
    drop(whole);
    let earlier = match t.trace_lookback() {
        0 => Vec::new(),
        n => {
            trace_days(
                ctx,
                days,
                from - Duration::days(n),
                from - Duration::days(1),
                t,
            )
            .await?
        }
    };
    let hashes = judged
        .iter()
        .map(|b| code_hashes(what, b))
        .collect::<Result<Vec<_>>>()?;
    let judged_counts = Arc::new(hash_counts(&hashes));
    // The earlier days' files are read on every core, each decoding the other columns only
    // for the rows whose code's hash is a judged code's.
    let firsts: Vec<RecordBatch> = on_lanes(&earlier, |day| {
        firsts_of(&day.path, &judged_counts)?
            .into_iter()
            .map(|b| with_schema(TRACE_DIR, &schema, b))
            .collect()
    })?
    .into_iter()
    .flatten()
    .collect();
    // The readers' handles are gone: the judged counts become the counts of every row.
    let mut seen = Arc::try_unwrap(judged_counts).unwrap_or_else(|shared| (*shared).clone());
    for b in &firsts {
        add_counts(&mut seen, &code_hashes(TRACE_DIR, b)?);
    }
    let rows = repeated_sales(what, &schema, (judged, &hashes), firsts, &seen)?;
    sales_context(what, &schema, rows)
}

/// How many of `hashes` each hash is.
fn hash_counts(hashes: &[Vec<Option<u64>>]) -> FastMap<u64, u32> {
    let mut counts = FastMap::default();
    for of_batch in hashes {
        add_counts(&mut counts, of_batch);
    }
    counts
}

/// Adds `hashes` to `counts`.
fn add_counts(counts: &mut FastMap<u64, u32>, hashes: &[Option<u64>]) {
    for h in hashes.iter().flatten() {
        *counts.entry(*h).or_default() += 1;
    }
}

/// The judged days' coded sales (with their rows' [`code_hash`]es, batch for batch) and the
/// earlier days' first sales of codes with a judged code's hash, less the judged sales whose
/// hash no other row of either has (`seen` counts every row's hash): the only rows a repeat can
/// be found among. A hash shared by two codes keeps both (the rule compares the codes
/// themselves).
fn repeated_sales(
    what: &str,
    schema: &Arc<Schema>,
    (judged, hashes): (Vec<RecordBatch>, &[Vec<Option<u64>>]),
    firsts: Vec<RecordBatch>,
    seen: &FastMap<u64, u32>,
) -> Result<Vec<RecordBatch>> {
    let mut rows = firsts;
    for (b, of_batch) in judged.iter().zip(hashes) {
        let keep: BooleanArray = of_batch
            .iter()
            .map(|h| Some(h.is_some_and(|h| seen.get(&h).is_some_and(|n| *n > 1))))
            .collect();
        if keep.true_count() > 0 {
            let kept = filter_record_batch(b, &keep).map_err(|e| CoreError::arrow(what, e))?;
            rows.push(with_schema(what, schema, kept)?);
        }
    }
    Ok(rows)
}

/// A context whose one table `sales` holds `rows` (of `schema`), spread over the cores.
fn sales_context(
    what: &str,
    schema: &Arc<Schema>,
    rows: Vec<RecordBatch>,
) -> Result<SessionContext> {
    let lanes = lanes();
    let mut partitions = vec![Vec::new(); lanes];
    for (i, b) in rows.into_iter().enumerate() {
        partitions[i % lanes].push(b);
    }
    let table =
        MemTable::try_new(schema.clone(), partitions).map_err(|e| CoreError::query(what, e))?;
    let out = session();
    out.register_table("sales", Arc::new(table))
        .map_err(|e| CoreError::query(what, e))?;
    Ok(out)
}

/// The [`code_hash`] of each row's `trace_code` in `b` (`None` for a row without one).
fn code_hashes(what: &str, b: &RecordBatch) -> Result<Vec<Option<u64>>> {
    Ok(text_values(b, "trace_code")
        .ok_or_else(|| no_text(what, "trace_code"))?
        .into_iter()
        .map(|c| c.map(code_hash))
        .collect())
}

/// Computes the trace-code day `day` on `ctx` (its `sales` table: the lake's, or the judged
/// days' coded sales) and writes it to `path`, with the [`CODE_HASH`] column.
async fn write_trace_day(
    ctx: &SessionContext,
    path: &Path,
    day: NaiveDate,
    t: &Thresholds,
) -> Result<()> {
    let sql = indicators::render(TRACE_DAY_SQL, day, day, t)?;
    let batches = run_sql(ctx, TRACE_DIR, &sql).await?;
    let schema = result_schema(ctx, TRACE_DIR, &sql, &batches).await?;
    let (schema, batches) = with_code_hash(&schema, &batches)?;
    Ok(write_parquet(path, schema, &batches)?)
}

/// Column of a trace-code day file holding the [`code_hash`] of its row's code.
const CODE_HASH: &str = "code_hash";

/// FNV-1a (64 bits) of a traceability code. The day files store it, so it is a fixed function
/// of the code's bytes (never a hasher whose output may change between versions); changing it
/// needs a new store [`VERSION`].
fn code_hash(code: &str) -> u64 {
    code.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A trace-code day's rows with the [`CODE_HASH`] column appended.
fn with_code_hash(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(CODE_HASH, DataType::UInt64, true));
    let out_schema = Arc::new(Schema::new(fields));
    let out = batches
        .iter()
        .map(|b| {
            let codes =
                text_values(b, "trace_code").ok_or_else(|| no_text(TRACE_DIR, "trace_code"))?;
            let hashes: UInt64Array = codes.iter().map(|c| c.map(code_hash)).collect();
            let mut columns = b.columns().to_vec();
            columns.push(Arc::new(hashes));
            RecordBatch::try_new(out_schema.clone(), columns)
                .map_err(|e| CoreError::arrow(TRACE_DIR, e).into())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out_schema, out))
}

/// The rows of trace-code day file `path` whose code's [`code_hash`] is a key of `judged`: the hash
/// column is read first (fixed-width, cheap to decode), the others only for the rows it keeps.
/// A hash may collide: the rows are those of the judged codes and of any code sharing a hash
/// with one, which the rule tells apart by the codes themselves.
fn firsts_of(path: &Path, judged: &Arc<FastMap<u64, u32>>) -> Result<Vec<RecordBatch>> {
    let fail = |reason: String| CoreError::Lake {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(format!("cannot read a stored day: {e}")))?;
    let column = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == CODE_HASH)
        .ok_or_else(|| fail(format!("no column {CODE_HASH}")))?;
    let projection = ProjectionMask::leaves(builder.parquet_schema(), [column]);
    let predicate_codes = judged.clone();
    let keep = ArrowPredicateFn::new(projection, move |b: RecordBatch| {
        let hashes = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!("column {CODE_HASH} is not UInt64"))
            })?;
        Ok(hashes
            .iter()
            .map(|h| Some(h.is_some_and(|h| predicate_codes.contains_key(&h))))
            .collect::<BooleanArray>())
    });
    builder
        .with_row_filter(RowFilter::new(vec![Box::new(keep)]))
        .build()
        .map_err(|e| fail(format!("cannot read a stored day: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CoreError::arrow(path.display().to_string(), e).into())
}

/// The values of text column `column` of `b` (plain or view strings); `None` when it has no
/// such column of text.
fn text_values<'a>(b: &'a RecordBatch, column: &str) -> Option<Vec<Option<&'a str>>> {
    let col = b.column_by_name(column)?;
    if let Some(a) = col.as_any().downcast_ref::<StringViewArray>() {
        return Some(a.iter().collect());
    }
    col.as_any()
        .downcast_ref::<StringArray>()
        .map(|a| a.iter().collect())
}

/// The error of a missing or non-text column.
fn no_text(what: &str, column: &str) -> CoreError {
    CoreError::Lake {
        path: PathBuf::from(what),
        reason: format!("no text column {column}"),
    }
}

/// The batches with the columns of `schema` (see [`with_schema`]).
fn fit_schema(
    what: &str,
    schema: &Arc<Schema>,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|b| with_schema(what, schema, b))
        .collect()
}

/// `b` with the columns of `schema`, by name (a stored file's schema may differ in
/// nullability or metadata; a column of another type is cast).
fn with_schema(what: &str, schema: &Arc<Schema>, b: RecordBatch) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let col = b.column_by_name(f.name()).ok_or_else(|| CoreError::Lake {
                path: PathBuf::from(what),
                reason: format!("no column {}", f.name()),
            })?;
            if col.data_type() == f.data_type() {
                Ok(col.clone())
            } else {
                cast(col, f.data_type()).map_err(|e| CoreError::arrow(what, e).into())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| CoreError::arrow(what, e).into())
}

/// The days of `days` not stored under their keys, as contiguous ranges (first, last).
pub fn missing_ranges(
    store: &DayStore,
    part: Part,
    days: impl IntoIterator<Item = (NaiveDate, String)>,
) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for (d, key) in days {
        if store.has(part, d, &key) {
            continue;
        }
        match out.last_mut() {
            Some((_, last)) if *last + Duration::days(1) == d => *last = d,
            _ => out.push((d, d)),
        }
    }
    out
}

/// `read` applied to every item on every core: item `i` goes to lane `i mod lanes` (one lane
/// per core), and each lane's results, in its items' order, are one element of the answer.
pub(crate) fn on_lanes<I: Sync, T: Send>(
    items: &[I],
    read: impl Fn(&I) -> Result<Vec<T>> + Sync,
) -> Result<Vec<Vec<T>>> {
    let lanes = lanes();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..lanes)
            .map(|lane| {
                let read = &read;
                scope.spawn(move || -> Result<Vec<T>> {
                    let mut out = Vec::new();
                    for item in items.iter().skip(lane).step_by(lanes) {
                        out.extend(read(item)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(CoreError::Internal("a day-store reader panicked".into()).into())
                })
            })
            .collect()
    })
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| CoreError::Lake {
            path: path.to_path_buf(),
            reason: format!("cannot read a stored day: {e}"),
        })?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CoreError::arrow(path.display().to_string(), e).into())
}

fn dates(v: impl Iterator<Item = NaiveDate>) -> ArrayRef {
    Arc::new(Date32Array::from_iter_values(
        v.map(Date32Type::from_naive_date),
    ))
}

fn hits_batch(hits: &[Hit]) -> Result<(Arc<Schema>, RecordBatch)> {
    let text = |nullable| (DataType::Utf8, nullable);
    let fields = [
        ("enterprise_id", text(false)),
        ("product_id", text(true)),
        ("biz_date", (DataType::Date32, false)),
        ("indicator", text(false)),
        ("window_start", (DataType::Date32, false)),
        ("window_end", (DataType::Date32, false)),
        ("observed", (DataType::Float64, false)),
        ("expected", (DataType::Float64, false)),
        ("detail", text(false)),
    ];
    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, (t, null))| Field::new(*n, t.clone(), *null))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            hits.iter().map(|h| &h.enterprise_id),
        )),
        Arc::new(StringArray::from_iter(
            hits.iter().map(|h| h.product_id.as_deref()),
        )),
        dates(hits.iter().map(|h| h.date)),
        Arc::new(StringArray::from_iter_values(
            hits.iter().map(|h| &h.indicator),
        )),
        dates(hits.iter().map(|h| h.window_start)),
        dates(hits.iter().map(|h| h.window_end)),
        Arc::new(Float64Array::from_iter_values(
            hits.iter().map(|h| h.observed),
        )),
        Arc::new(Float64Array::from_iter_values(
            hits.iter().map(|h| h.expected),
        )),
        Arc::new(StringArray::from_iter_values(
            hits.iter().map(|h| &h.detail),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| CoreError::arrow("days/hits", e))?;
    Ok((schema, batch))
}

fn features_batch(t: &FeatureTable, rows: &[usize]) -> Result<(Arc<Schema>, RecordBatch)> {
    let mut fields = vec![
        Field::new("enterprise_id", DataType::Utf8, false),
        Field::new("biz_date", DataType::Date32, false),
        Field::new("segment", DataType::Utf8, false),
    ];
    fields.extend(
        FEATURES
            .iter()
            .map(|f| Field::new(*f, DataType::Float64, false)),
    );
    let schema = Arc::new(Schema::new(fields));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|&i| &t.enterprise_id[i]),
        )),
        dates(rows.iter().map(|&i| t.date[i])),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|&i| &t.segment[i]),
        )),
    ];
    for j in 0..FEATURES.len() {
        columns.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|&i| t.row(i)[j]),
        )));
    }
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| CoreError::arrow("days/features", e))?;
    Ok((schema, batch))
}

/// The rows of the day tables `parts`, in the feature query's order (enterprise, then day).
pub fn join_features(parts: Vec<FeatureTable>) -> FeatureTable {
    let mut all = FeatureTable::default();
    for p in parts {
        all.enterprise_id.extend(p.enterprise_id);
        all.date.extend(p.date);
        all.segment.extend(p.segment);
        all.values.extend(p.values);
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&a, &b| {
        (&all.enterprise_id[a], all.date[a]).cmp(&(&all.enterprise_id[b], all.date[b]))
    });
    let mut out = FeatureTable::default();
    for i in order {
        out.enterprise_id.push(all.enterprise_id[i].clone());
        out.date.push(all.date[i]);
        out.segment.push(all.segment[i].clone());
        out.values.extend_from_slice(all.row(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored hash is FNV-1a 64 (its published test vectors): a day file written by one
    /// build is read by the next.
    #[test]
    fn the_code_hash_is_fnv_1a() {
        assert_eq!(code_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(code_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(code_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    /// The coded sales of `rows` — `(code, event time, enterprise, day)`, each its own event —
    /// in the columns of `trace_judged.sql`.
    fn coded_sales(rows: &[(&str, &str, &str, &str)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("trace_code", DataType::Utf8, true),
            Field::new("event_time", DataType::Utf8, true),
            Field::new("event_id", DataType::Utf8, true),
            Field::new("enterprise_id", DataType::Utf8, true),
            Field::new("product_id", DataType::Utf8, true),
            Field::new("biz_date", DataType::Date32, true),
        ]));
        let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..rows.len()).map(f)))
        };
        RecordBatch::try_new(
            schema,
            vec![
                text(&|i| rows[i].0.to_string()),
                text(&|i| rows[i].1.to_string()),
                text(&|i| format!("e{i}")),
                text(&|i| rows[i].2.to_string()),
                text(&|_| "P1".to_string()),
                dates(rows.iter().map(|r| r.3.parse::<NaiveDate>().unwrap())),
            ],
        )
        .unwrap()
    }

    /// Of the judged sales only those whose code's hash another row has are kept, and the rule
    /// on them finds what it finds on every sale: a repeat of an earlier first sale and a
    /// repeat inside the judged days, and no repeat where an earlier first sale only shares a
    /// judged code's hash (given here as if it did: the rule compares the codes).
    #[tokio::test]
    async fn only_sales_that_may_repeat_are_kept_and_a_shared_hash_is_no_repeat() {
        let judged = coded_sales(&[
            ("C-ONCE", "2026-10-10T09:00:00", "E1", "2026-10-10"),
            ("C-EARLIER", "2026-10-10T09:01:00", "E2", "2026-10-10"),
            ("C-TWICE", "2026-10-10T09:02:00", "E3", "2026-10-10"),
            ("C-TWICE", "2026-10-11T10:00:00", "E4", "2026-10-11"),
            ("C-COLLIDES", "2026-10-11T10:01:00", "E5", "2026-10-11"),
        ]);
        let firsts = coded_sales(&[
            ("C-EARLIER", "2026-10-01T08:00:00", "E9", "2026-10-01"),
            ("C-OTHER", "2026-10-02T08:00:00", "E8", "2026-10-02"),
        ]);
        let schema = judged.schema();
        let hashes = vec![code_hashes("judged", &judged).unwrap()];
        let mut first_hashes = code_hashes("firsts", &firsts).unwrap();
        first_hashes[1] = Some(code_hash("C-COLLIDES"));
        let seen = hash_counts(&[hashes[0].clone(), first_hashes]);
        let rows = repeated_sales(
            "judged",
            &schema,
            (vec![judged.clone()], &hashes),
            vec![firsts.clone()],
            &seen,
        )
        .unwrap();
        let mut kept: Vec<String> = rows
            .iter()
            .flat_map(|b| text_values(b, "trace_code").unwrap())
            .flatten()
            .map(str::to_string)
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                "C-COLLIDES",
                "C-EARLIER",
                "C-EARLIER",
                "C-OTHER",
                "C-TWICE",
                "C-TWICE"
            ],
            "only the sale of C-ONCE, whose hash nothing else has, is left out"
        );
        let (from, to) = ("2026-10-10".parse().unwrap(), "2026-10-11".parse().unwrap());
        let t = Thresholds::default();
        let sql = indicators::query_sql("trace_duplicate.sql").unwrap();
        let t = &t;
        let hits_of = |rows: Vec<RecordBatch>| {
            let ctx = sales_context("test", &schema, rows).unwrap();
            async move {
                let mut hits = indicators::run_query(&ctx, "trace_duplicate.sql", sql, from, to, t)
                    .await
                    .unwrap();
                // The query's rows come in no fixed order.
                indicators::sort_hits(&mut hits);
                hits.into_iter()
                    .map(|h| (h.enterprise_id, h.date.to_string(), h.detail))
                    .collect::<Vec<_>>()
            }
        };
        let from_kept = hits_of(rows).await;
        assert_eq!(
            from_kept,
            [
                (
                    "E2".to_string(),
                    "2026-10-10".to_string(),
                    "code=C-EARLIER;first_sold=2026-10-01;first_seller=E9".to_string()
                ),
                (
                    "E4".to_string(),
                    "2026-10-11".to_string(),
                    "code=C-TWICE;first_sold=2026-10-10;first_seller=E3".to_string()
                ),
            ]
        );
        assert_eq!(from_kept, hits_of(vec![judged, firsts]).await);
    }
}
