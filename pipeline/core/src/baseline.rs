//! The stream baseline: what the nightly job hands to the stream service, written to
//! `OUT/stream_baseline/` at the end of every nightly run from the same registered tables the
//! indicators read (`sql/stream/baseline_*.sql`):
//!
//! ```text
//! baseline.json          the run's last day and rule version
//! retail_daily/date=YYYY-MM-DD.parquet  retail packages per enterprise × product of that day,
//!                        one file per day of the last 28 (the surge's history)
//! closing.parquet        inventory snapshots of the last day (next day's opening stock)
//! failed_batches.parquet batches that failed a test, first failing day
//! trace_codes/date=YYYY-MM-DD.parquet   first sale of every traceability code sold that day,
//!                        one file per day of the lookback
//! trace_codes/days.json  each day file's fingerprint (what the lake held of that day's sales)
//! ```
//!
//! Invariants: every file describes business days up to and including `to`; the stream judges
//! the days after it. Files are written whole (temporary name, then rename). A trace-code day
//! file is written when its day enters the lookback or its sales change (a late record) and
//! is otherwise left as it is, so a night writes the codes of its own day, not of the whole
//! lookback; days that leave the lookback are removed. When the nightly job keeps a day store,
//! the day files are its `trace_codes` and `retail_daily` days (the same queries), linked
//! rather than computed, so a night writes no rows of the days it did not compute.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::indicators::{RULE_VERSION, Thresholds, render};
use crate::lake::write_parquet;
use crate::query::{query_rows, result_schema, run_sql, table_rows};

/// Directory of the baseline inside a nightly output directory.
pub const BASELINE_DIR: &str = "stream_baseline";

const QUERIES: &[(&str, &str)] = &[
    (
        "closing",
        include_str!("../../sql/stream/baseline_closing.sql"),
    ),
    (
        "failed_batches",
        include_str!("../../sql/stream/baseline_failed.sql"),
    ),
];

/// One day's retail packages per enterprise × product (from the `retail_daily` table).
const RETAIL_DAY_SQL: &str = include_str!("../../sql/stream/baseline_retail.sql");
/// Folder of the retail day files inside the baseline.
pub const RETAIL_DIR: &str = "retail_daily";
/// Days of retail history the baseline holds (ending with its last day).
pub const RETAIL_DAYS: i64 = 28;
/// The single retail file of baselines written before the day files.
const LEGACY_RETAIL_FILE: &str = "retail_daily.parquet";
/// What the stream reads of the retail days (the day store's files have more columns).
const RETAIL_READ_SQL: &str = "SELECT enterprise_id, product_id, biz_date, qty FROM retail_daily";

/// The first sales of one day's traceability codes.
pub const TRACE_DAY_SQL: &str = include_str!("../../sql/stream/baseline_trace.sql");
/// Each lookback day's fingerprint.
const TRACE_DAYS_SQL: &str = include_str!("../../sql/stream/baseline_trace_days.sql");
/// Folder of the trace-code day files inside the baseline.
pub const TRACE_DIR: &str = "trace_codes";
/// The day files' fingerprints.
const TRACE_MANIFEST: &str = "days.json";
/// The single trace-code file of baselines written before the day files.
const LEGACY_TRACE_FILE: &str = "trace_codes.parquet";

/// What a night did to the trace-code day files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceDaysExport {
    /// Days written (new to the lookback, or changed).
    pub written: Vec<NaiveDate>,
    /// Days left as they were.
    pub kept: usize,
    /// Days removed (out of the lookback, or without coded sales now).
    pub removed: usize,
}

#[derive(Deserialize)]
struct DayPrint {
    day: String,
    fingerprint: String,
}

/// A day file the nightly job keeps in its day store (a trace-code or a retail day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDay {
    /// The business day.
    pub day: NaiveDate,
    /// Its file in the store.
    pub path: PathBuf,
    /// Its key there (a digest of the lake files holding the day's records).
    pub key: String,
}

/// The trace-code day files of the lookback ending `to` (see the module documentation). With
/// `stored` (the day store's files of the lookback), a day's fingerprint is its key there and
/// its file is linked (or copied) from the store: no rows are read. Without, fingerprints and
/// files are computed from the registered `sales` table.
pub async fn export_trace_days(
    ctx: &SessionContext,
    baseline_dir: &Path,
    to: NaiveDate,
    t: &Thresholds,
    stored: Option<&[StoredDay]>,
) -> Result<TraceDaysExport> {
    let dir = baseline_dir.join(TRACE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let manifest_path = dir.join(TRACE_MANIFEST);
    let before: BTreeMap<String, String> = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| CoreError::Config(format!("{}: {e}", manifest_path.display())))?,
        Err(_) => BTreeMap::new(),
    };
    let prints = match stored {
        Some(days) => days
            .iter()
            .map(|d| DayPrint {
                day: d.day.format("%Y-%m-%d").to_string(),
                fingerprint: format!("store:{}", d.key),
            })
            .collect(),
        None => {
            let sql = render(TRACE_DAYS_SQL, to, to, t)?;
            query_rows::<DayPrint>(ctx, "trace_day_prints", &sql).await?
        }
    };
    let mut report = TraceDaysExport::default();
    let mut after = BTreeMap::new();
    for p in prints {
        let day = NaiveDate::parse_from_str(&p.day, "%Y-%m-%d")
            .map_err(|e| CoreError::Internal(format!("trace day {:?}: {e}", p.day)))?;
        let file = dir.join(day_file(day));
        if before.get(&p.day) == Some(&p.fingerprint) && file.exists() {
            report.kept += 1;
        } else {
            match stored.and_then(|s| s.iter().find(|d| d.day == day)) {
                Some(d) => link_or_copy(&d.path, &file)?,
                None => {
                    let sql = render(TRACE_DAY_SQL, day, day, t)?;
                    let batches = run_sql(ctx, "trace_codes", &sql).await?;
                    write_parquet(
                        &file,
                        result_schema(ctx, "stream baseline", &sql, &batches).await?,
                        &batches,
                    )?;
                }
            }
            report.written.push(day);
        }
        after.insert(p.day, p.fingerprint);
    }
    report.removed = remove_other_days(&dir, |name| {
        name.strip_prefix("date=")
            .and_then(|n| n.strip_suffix(".parquet"))
            .is_some_and(|d| after.contains_key(d))
    })?;
    let legacy = baseline_dir.join(LEGACY_TRACE_FILE);
    if legacy.exists() {
        std::fs::remove_file(&legacy).map_err(|e| CoreError::io(&legacy, e))?;
    }
    let text =
        serde_json::to_string_pretty(&after).map_err(|e| CoreError::Internal(e.to_string()))?;
    write_whole(&manifest_path, &(text + "\n"))?;
    Ok(report)
}

/// The retail day files of the [`RETAIL_DAYS`] ending `to`: linked from the day store when
/// `stored` has them (no rows read), else one query per day over the registered
/// `retail_daily` table. Files of other days, and the single file of older baselines, are
/// removed.
pub async fn export_retail_days(
    ctx: &SessionContext,
    baseline_dir: &Path,
    to: NaiveDate,
    t: &Thresholds,
    stored: Option<&[StoredDay]>,
) -> Result<()> {
    let dir = baseline_dir.join(RETAIL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let first = to - chrono::Duration::days(RETAIL_DAYS - 1);
    let mut kept = HashSet::new();
    for day in first.iter_days().take_while(|d| *d <= to) {
        let name = day_file(day);
        let file = dir.join(&name);
        match stored {
            Some(days) => {
                let Some(d) = days.iter().find(|d| d.day == day) else {
                    continue;
                };
                link_or_copy(&d.path, &file)?;
            }
            None => {
                let sql = render(RETAIL_DAY_SQL, day, day, t)?;
                let batches = run_sql(ctx, RETAIL_DIR, &sql).await?;
                let schema = result_schema(ctx, "stream baseline", &sql, &batches).await?;
                write_parquet(&file, schema, &batches)?;
            }
        }
        kept.insert(name);
    }
    remove_other_days(&dir, |name| kept.contains(name))?;
    let legacy = baseline_dir.join(LEGACY_RETAIL_FILE);
    if legacy.exists() {
        std::fs::remove_file(&legacy).map_err(|e| CoreError::io(&legacy, e))?;
    }
    Ok(())
}

/// The name of day `day`'s file in a folder of day files.
fn day_file(day: NaiveDate) -> String {
    format!("date={}.parquet", day.format("%Y-%m-%d"))
}

/// Removes the day files (`date=…parquet`) of `dir` whose name `keep` refuses; returns how
/// many.
fn remove_other_days(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let path = entry.map_err(|e| CoreError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with("date=") && name.ends_with(".parquet") && !keep(name) {
            std::fs::remove_file(&path).map_err(|e| CoreError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Puts file `from` at `to` whole: a hard link (the store replaces its files by renaming, so
/// the link keeps the bytes it was made with), or a copy where links are not possible.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("parquet.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CoreError::io(&tmp, e)),
    }
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).map_err(|e| CoreError::io(from, e))?;
    }
    std::fs::rename(&tmp, to).map_err(|e| CoreError::io(to, e))
}

/// Writes `text` to `path` whole (a temporary file, then a rename).
fn write_whole(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
}

/// `baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineInfo {
    /// Last business day the baseline covers.
    pub to: NaiveDate,
    /// Rule-set version of the run that wrote it.
    pub rule_version: String,
}

/// The day store's files a baseline links instead of computing them, when the run keeps one.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoredDays<'a> {
    /// The trace-code days of the lookback ending `to`.
    pub trace: Option<&'a [StoredDay]>,
    /// The `retail_daily` days of the [`RETAIL_DAYS`] ending `to`.
    pub retail: Option<&'a [StoredDay]>,
}

/// Writes the baseline of a nightly run whose tables are registered on `ctx` (including the
/// `retail_daily` feature table unless `stored` has its days).
pub async fn export(
    ctx: &SessionContext,
    out: &Path,
    to: NaiveDate,
    t: &Thresholds,
    stored: StoredDays<'_>,
) -> Result<()> {
    let dir = out.join(BASELINE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    for (name, sql) in QUERIES {
        let sql = render(sql, to, to, t)?;
        let batches = run_sql(ctx, name, &sql).await?;
        let schema = result_schema(ctx, "stream baseline", &sql, &batches).await?;
        write_parquet(&dir.join(format!("{name}.parquet")), schema, &batches)?;
    }
    export_retail_days(ctx, &dir, to, t, stored.retail).await?;
    let trace = export_trace_days(ctx, &dir, to, t, stored.trace).await?;
    tracing::info!(
        written = trace.written.len(),
        kept = trace.kept,
        removed = trace.removed,
        "stream baseline: trace-code days"
    );
    let info = BaselineInfo {
        to,
        rule_version: RULE_VERSION.to_string(),
    };
    let text =
        serde_json::to_string_pretty(&info).map_err(|e| CoreError::Internal(e.to_string()))?;
    write_whole(&dir.join("baseline.json"), &(text + "\n"))
}

/// A trace code's first sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceFirst {
    /// The code.
    pub trace_code: String,
    /// Event time of the first sale.
    pub event_time: DateTime<FixedOffset>,
    /// Its event id.
    pub event_id: String,
    /// Seller.
    pub enterprise_id: String,
    /// Product.
    pub product_id: String,
    /// Its business day.
    pub biz_date: NaiveDate,
}

#[derive(Deserialize)]
struct RetailRow {
    enterprise_id: String,
    product_id: String,
    biz_date: NaiveDate,
    qty: f64,
}

#[derive(Deserialize)]
struct ClosingRow {
    enterprise_id: String,
    product_id: String,
    qty: i64,
}

#[derive(Deserialize)]
struct FailedRow {
    product_id: String,
    batch_no: String,
    failed_on: NaiveDate,
}

/// The loaded baseline (empty when the stream runs without one).
#[derive(Debug, Default)]
pub struct Baseline {
    /// Where it was read from.
    pub dir: Option<PathBuf>,
    /// Last business day covered.
    pub to: Option<NaiveDate>,
    /// Retail quantity per (enterprise, product) per day.
    pub retail: HashMap<(String, String), BTreeMap<NaiveDate, f64>>,
    /// Days with retail sales per enterprise.
    pub retail_days: HashMap<String, HashSet<NaiveDate>>,
    /// Closing stock on `to` per (enterprise, product).
    pub closing: HashMap<(String, String), i64>,
    /// Enterprises that reported inventory on `to`.
    pub reported: HashSet<String>,
    /// First failing day per (product, batch).
    pub failed: HashMap<(String, String), NaiveDate>,
    /// Rule-set version of the nightly run that wrote it.
    pub rule_version: Option<String>,
    /// The credit-file entries that lower each enterprise's grade ([`CREDIT_FILE`]): the
    /// stream scores with the effective grade of the event's day, as the nightly does.
    pub credit: HashMap<String, Vec<CreditStep>>,
}

/// File of the baseline holding the credit-file entries that lower grades.
pub const CREDIT_FILE: &str = "credit.json";

/// A credit-file entry that lowers an enterprise's grade by `steps` while public.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditStep {
    /// First day it counts (the decision day).
    pub from: NaiveDate,
    /// Last day it counts (the end of its publicity, or the day before its case's low-risk
    /// listing or credit repair).
    pub until: NaiveDate,
    /// Grade steps.
    pub steps: u32,
    /// Why, as the credit file says it.
    pub reason: String,
}

/// Writes the credit-file entries of the enterprises whose grade they lower into the baseline
/// directory of `out` (written whole, then renamed).
pub fn write_credit(out: &Path, credit: &BTreeMap<String, Vec<CreditStep>>) -> Result<()> {
    let dir = out.join(BASELINE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let path = dir.join(CREDIT_FILE);
    let tmp = dir.join(format!("{CREDIT_FILE}.tmp"));
    let text = serde_json::to_string_pretty(credit)
        .map_err(|e| CoreError::Internal(format!("credit steps as JSON: {e}")))?;
    std::fs::write(&tmp, text).map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CoreError::io(&path, e))?;
    Ok(())
}

impl Baseline {
    /// The effective credit grade of `enterprise_id` on `day`: `reference` lowered by the
    /// steps of its entries counting that day (floor D).
    pub fn effective_credit(&self, enterprise_id: &str, reference: &str, day: NaiveDate) -> String {
        let steps = self.credit.get(enterprise_id).map_or(0, |list| {
            list.iter()
                .filter(|c| c.from <= day && day <= c.until)
                .map(|c| c.steps)
                .sum()
        });
        crate::risk::lower_grade(reference, steps)
    }
    /// Reads `NIGHTLY_OUT/stream_baseline/`.
    pub async fn load(nightly_out: &Path) -> Result<Self> {
        let dir = nightly_out.join(BASELINE_DIR);
        let info_path = dir.join("baseline.json");
        let text = std::fs::read_to_string(&info_path).map_err(|e| CoreError::Lake {
            path: dir.clone(),
            reason: format!(
                "{}: {e} (run `pharmwatch nightly` first; it writes the stream baseline)",
                info_path.display()
            ),
        })?;
        let info: BaselineInfo = serde_json::from_str(&text)
            .map_err(|e| CoreError::Config(format!("{}: {e}", info_path.display())))?;
        let ctx = SessionContext::new();
        for (name, _) in QUERIES {
            let path = dir.join(format!("{name}.parquet"));
            ctx.register_parquet(*name, path.to_string_lossy().as_ref(), Default::default())
                .await
                .map_err(|e| CoreError::query(&format!("baseline {}", path.display()), e))?;
        }
        let retail = match Self::register_retail(&ctx, &dir).await? {
            true => query_rows::<RetailRow>(&ctx, RETAIL_DIR, RETAIL_READ_SQL).await?,
            false => Vec::new(),
        };
        let mut b = Self {
            dir: Some(dir),
            to: Some(info.to),
            rule_version: Some(info.rule_version.clone()),
            ..Self::default()
        };
        for r in retail {
            b.retail_days
                .entry(r.enterprise_id.clone())
                .or_default()
                .insert(r.biz_date);
            b.retail
                .entry((r.enterprise_id, r.product_id))
                .or_default()
                .insert(r.biz_date, r.qty);
        }
        for r in table_rows::<ClosingRow>(&ctx, "closing").await? {
            b.reported.insert(r.enterprise_id.clone());
            b.closing.insert((r.enterprise_id, r.product_id), r.qty);
        }
        for r in table_rows::<FailedRow>(&ctx, "failed_batches").await? {
            b.failed.insert((r.product_id, r.batch_no), r.failed_on);
        }
        // A baseline of a release before the credit file has none: reference grades.
        let credit_path = b.dir.as_ref().map(|d| d.join(CREDIT_FILE));
        if let Some(path) = credit_path.filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
            b.credit = serde_json::from_str(&text)
                .map_err(|e| CoreError::Config(format!("{}: {e}", path.display())))?;
        }
        Ok(b)
    }

    /// Registers the retail days of baseline folder `dir` as table `retail_daily` (the day
    /// files, or the single file of an older baseline); false when it has none.
    async fn register_retail(ctx: &SessionContext, dir: &Path) -> Result<bool> {
        let days = dir.join(RETAIL_DIR);
        let has_days = std::fs::read_dir(&days).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("date=") && n.ends_with(".parquet"))
            })
        });
        let path = match (has_days, dir.join(LEGACY_RETAIL_FILE)) {
            (true, _) => format!("{}/", days.display()),
            (false, legacy) if legacy.exists() => legacy.display().to_string(),
            (false, _) => return Ok(false),
        };
        ctx.register_parquet(RETAIL_DIR, &path, Default::default())
            .await
            .map_err(|e| CoreError::query(&format!("baseline {path}"), e))?;
        Ok(true)
    }

    /// The trace-code files of this baseline, each with what identifies it in the store's
    /// `stream_seeded` table: one per day of the lookback (a baseline written before the day
    /// files has its single file instead). The stream seeds each file once.
    pub fn trace_files(&self) -> Result<Vec<TraceFile>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let manifest = dir.join(TRACE_DIR).join(TRACE_MANIFEST);
        let text = match std::fs::read_to_string(&manifest) {
            Ok(text) => text,
            Err(_) => {
                let legacy = dir.join(LEGACY_TRACE_FILE);
                let Ok(meta) = std::fs::metadata(&legacy) else {
                    return Ok(Vec::new());
                };
                return Ok(vec![TraceFile {
                    identity: format!(
                        "{}|{}|{}|{}",
                        dir.display(),
                        self.to.map(|d| d.to_string()).unwrap_or_default(),
                        self.rule_version.as_deref().unwrap_or(""),
                        meta.len()
                    ),
                    path: legacy,
                }]);
            }
        };
        let days: BTreeMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| CoreError::Config(format!("{}: {e}", manifest.display())))?;
        Ok(days
            .into_iter()
            .map(|(day, fingerprint)| TraceFile {
                identity: format!("{}|{TRACE_DIR}|{day}|{fingerprint}", dir.display()),
                path: dir.join(TRACE_DIR).join(format!("date={day}.parquet")),
            })
            .collect())
    }
}

/// One trace-code file of a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFile {
    /// What identifies it in `stream_seeded`: its day and fingerprint (or, for a baseline's
    /// single file, the baseline and the file's size).
    pub identity: String,
    /// Where it is.
    pub path: PathBuf,
}

impl TraceFile {
    /// The first sales it holds.
    pub async fn read(&self) -> Result<Vec<TraceFirst>> {
        let ctx = SessionContext::new();
        ctx.register_parquet(
            "trace_codes",
            self.path.to_string_lossy().as_ref(),
            Default::default(),
        )
        .await
        .map_err(|e| CoreError::query(&format!("baseline {}", self.path.display()), e))?;
        table_rows::<TraceFirst>(&ctx, "trace_codes").await
    }
}
