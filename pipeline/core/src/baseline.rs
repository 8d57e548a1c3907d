//! The stream baseline: what the nightly job hands to the stream service, written to
//! `OUT/stream_baseline/` at the end of every nightly run from the same registered tables the
//! indicators read (`sql/stream/baseline_*.sql`):
//!
//! ```text
//! baseline.json          the run's last day and rule version
//! retail_daily.parquet   retail packages per enterprise × product × day, the last 28 days
//! closing.parquet        inventory snapshots of the last day (next day's opening stock)
//! failed_batches.parquet batches that failed a test, first failing day
//! trace_codes.parquet    first sale of every traceability code in the lookback
//! ```
//!
//! Invariant: every file describes business days up to and including `to`; the stream judges
//! the days after it. Files are written whole (temporary name, then rename).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::indicators::{RULE_VERSION, Thresholds, render};
use crate::lake::write_parquet;
use crate::query::{run_sql, table_rows};

/// Directory of the baseline inside a nightly output directory.
pub const BASELINE_DIR: &str = "stream_baseline";

const QUERIES: &[(&str, &str)] = &[
    (
        "retail_daily",
        include_str!("../../sql/stream/baseline_retail.sql"),
    ),
    (
        "closing",
        include_str!("../../sql/stream/baseline_closing.sql"),
    ),
    (
        "failed_batches",
        include_str!("../../sql/stream/baseline_failed.sql"),
    ),
    (
        "trace_codes",
        include_str!("../../sql/stream/baseline_trace.sql"),
    ),
];

/// `baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineInfo {
    /// Last business day the baseline covers.
    pub to: NaiveDate,
    /// Rule-set version of the run that wrote it.
    pub rule_version: String,
}

/// Writes the baseline of a nightly run whose tables are registered on `ctx` (including the
/// `retail_daily` feature table).
pub async fn export(ctx: &SessionContext, out: &Path, to: NaiveDate, t: &Thresholds) -> Result<()> {
    let dir = out.join(BASELINE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    for (name, sql) in QUERIES {
        let sql = render(sql, to, to, t)?;
        let batches = run_sql(ctx, name, &sql).await?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => ctx
                .sql(&sql)
                .await
                .map_err(|e| CoreError::query(name, e))?
                .schema()
                .inner()
                .clone(),
        };
        write_parquet(&dir.join(format!("{name}.parquet")), schema, &batches)?;
    }
    let info = BaselineInfo {
        to,
        rule_version: RULE_VERSION.to_string(),
    };
    let path = dir.join("baseline.json");
    let tmp = path.with_extension("json.tmp");
    let text =
        serde_json::to_string_pretty(&info).map_err(|e| CoreError::Internal(e.to_string()))?;
    std::fs::write(&tmp, text + "\n").map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| CoreError::io(&path, e))
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
}

impl Baseline {
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
        let mut b = Self {
            dir: Some(dir),
            to: Some(info.to),
            rule_version: Some(info.rule_version.clone()),
            ..Self::default()
        };
        for r in table_rows::<RetailRow>(&ctx, "retail_daily").await? {
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
        Ok(b)
    }

    /// The first sales of trace codes, read on demand: they go into the store's shared table
    /// once per baseline (see `stream_seeded`), not on every start.
    pub async fn trace_codes(&self) -> Result<Vec<TraceFirst>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let ctx = SessionContext::new();
        let path = dir.join("trace_codes.parquet");
        ctx.register_parquet(
            "trace_codes",
            path.to_string_lossy().as_ref(),
            Default::default(),
        )
        .await
        .map_err(|e| CoreError::query(&format!("baseline {}", path.display()), e))?;
        table_rows::<TraceFirst>(&ctx, "trace_codes").await
    }

    /// What identifies this baseline in the store's `stream_seeded` table.
    pub fn identity(&self) -> Option<String> {
        let dir = self.dir.as_ref()?;
        let len = std::fs::metadata(dir.join("trace_codes.parquet"))
            .map(|m| m.len())
            .unwrap_or(0);
        Some(format!(
            "{}|{}|{}|{len}",
            dir.display(),
            self.to?,
            self.rule_version.as_deref().unwrap_or("")
        ))
    }
}
