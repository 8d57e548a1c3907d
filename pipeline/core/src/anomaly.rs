//! The anomaly model in the nightly job: features per enterprise × day, a model per segment,
//! scores with reasons a supervisor can read, and the flags that become `model_anomaly` items.
//!
//! Features come from `sql/features/enterprise_daily.sql` (each is described there). The
//! model set is fitted per segment — pharmacies, wholesale (wholesalers and chain
//! headquarters), manufacturers — on the training window `[to − train_days + 1, to]` (widened
//! to cover `[from, to]`) minus the enterprise-days the rules flag there (the model is to
//! learn normal from what passed the rules, and catch what they miss), or loaded from a
//! previous artifact. Every enterprise-day of
//! `[from, to]` with a row in the feature table is scored; it is **flagged** when its
//! estimated tail probability on clean data is at most the target false-alarm rate α
//! (default [`DEFAULT_FALSE_ALARM_RATE`], 1 in 1000 enterprise-days; `[nightly]
//! model_false_alarm_rate`). The tail is fitted per segment on the body of the training
//! scores and extrapolated (`pharmwatch_models::calibrate::TailFit`), so the number of flags
//! follows the data: a clean province gets about α of its enterprise-days flagged, one with
//! many anomalies the rules miss gets more — not a fixed share of every night. The verdict's
//! `percentile` is the calibrated `1 − tail probability` and `threshold` is `1 − α`.
//!
//! Every feature has a **scale floor** ([`FEATURE_FLOORS`]): the smallest difference that
//! means something for it (a stocktake miscount of a package or two, a price change of 2 %).
//! A feature that barely moves in training (no stock gaps on a quiet segment) is measured in
//! those units, not in its own near-zero spread.
//!
//! **A baseline needs a history.** Every feature compares a day with the enterprise's own
//! prior 28 days. An enterprise that first appears inside the feature table (a pharmacy that
//! opened, one that started reporting) has no such history yet: its first weeks look like a
//! surge against a mean over days it did not exist (measured on a clean simulated province
//! with openings: every model flag came from five chain stores opening). Its rows of the
//! first [`MIN_HISTORY_DAYS`] days after its first row are neither trained on nor scored —
//! the same principle as the retail-spike rule's minimum of active days. An enterprise present
//! on the table's first day counts as established (the table cannot see further back).
//!
//! A model flag alone scores 35 (grade B, 42 with credit grade D: still B), so it never
//! drafts a caution notice by itself (see [`crate::risk`]).
//!
//! Invariants: a segment with fewer than [`MIN_SEGMENT_ROWS`] training rows gets no model
//! and its rows no score (recorded in the summary, never guessed); a loaded artifact must have
//! exactly this build's feature names, or the run fails naming the difference.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use pharmwatch_models::model::short;
use pharmwatch_models::{Contribution, Family, FitOptions, Model, ModelSet};

use crate::error::{CoreError, Result};
use crate::indicators::{Thresholds, dates, floats, render, strings};

/// The feature query.
pub const FEATURE_SQL: &str = include_str!("../../sql/features/enterprise_daily.sql");

/// Day tables the feature query reads (name, SQL over `[from − 31 days, to]`, the window of
/// every day table, [`crate::indicators::FEATURE_WINDOW_DAYS`]; the features read 28): each row
/// describes one business day, so the nightly job computes a day's rows once and keeps them
/// in its day store; without one, [`build_day_tables`] builds them for a run. In the order of
/// [`DAY_TABLE_STAGES`]: a table may read those before it.
pub const DAY_TABLES: &[(&str, &str)] = &[SALES_DAILY, INVENTORY_DAYS, ENTERPRISE_FLOWS];

/// [`DAY_TABLES`] in the stages they are built in: a stage's tables read the lake and the
/// tables of the stages before it (`enterprise_flows` sums `sales_daily`'s rows), never one
/// another, so a stage's days can be computed together.
pub const DAY_TABLE_STAGES: &[&[(&str, &str)]] =
    &[&[SALES_DAILY, INVENTORY_DAYS], &[ENTERPRISE_FLOWS]];

/// The day tables an earlier stage of [`DAY_TABLE_STAGES`] builds before table `name` (what it
/// may read; none for a table of the first stage or of no stage).
pub fn day_table_inputs(name: &str) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let stage = DAY_TABLE_STAGES
        .iter()
        .position(|stage| stage.iter().any(|(n, _)| *n == name))
        .unwrap_or(0);
    DAY_TABLE_STAGES[..stage].iter().flat_map(|s| s.iter())
}

const SALES_DAILY: (&str, &str) = (
    "sales_daily",
    include_str!("../../sql/features/sales_daily.sql"),
);
const INVENTORY_DAYS: (&str, &str) = (
    "inventory_days",
    include_str!("../../sql/features/inventory_days.sql"),
);
const ENTERPRISE_FLOWS: (&str, &str) = (
    "enterprise_flows",
    include_str!("../../sql/features/enterprise_flows.sql"),
);

/// Builds the day tables of [`DAY_TABLES`] over the window the features of `[from, to]` read
/// (`[from − 31 days, to]`, more than the 28 they read), replacing any registered before.
pub async fn build_day_tables(ctx: &SessionContext, from: NaiveDate, to: NaiveDate) -> Result<()> {
    for (name, _) in DAY_TABLES {
        ctx.deregister_table(*name)
            .map_err(|e| CoreError::query(name, e))?;
    }
    crate::indicators::build_tables(ctx, DAY_TABLES, from, to, &Thresholds::default()).await?;
    Ok(())
}

/// Feature columns, in the query's order.
pub const FEATURES: &[&str] = &[
    "sales_ratio",
    "products_sold_ratio",
    "sales_up_share",
    "purchase_ratio",
    "production_ratio",
    "purchase_sales_7d",
    "price_vs_own",
    "min_price_vs_own",
    "low_price_share",
    "special_share",
    "special_ratio",
    "stock_gap_units",
    "stock_gap_products",
    "report_gap_days",
];

/// Target false-alarm rate of the model's flags: the share of clean enterprise-days flagged.
pub const DEFAULT_FALSE_ALARM_RATE: f64 = 0.001;
/// Calibrated percentile from which an enterprise-day is flagged: `1 − DEFAULT_FALSE_ALARM_RATE`.
pub const DEFAULT_THRESHOLD: f64 = 1.0 - DEFAULT_FALSE_ALARM_RATE;

/// Smallest scale of each feature, in its own unit: the difference that is ordinary on real
/// data whatever the training spread (see `pharmwatch_models::scale`).
pub const FEATURE_FLOORS: &[(&str, f64)] = &[
    // Ratios to a 28-day daily mean: weekday rhythm and chance move them by a quarter.
    ("sales_ratio", 0.25),
    ("products_sold_ratio", 0.15),
    ("sales_up_share", 0.05),
    // Deliveries and production runs are lumpy.
    ("purchase_ratio", 0.5),
    ("production_ratio", 0.5),
    ("purchase_sales_7d", 0.25),
    // Prices: a 2 % change is rounding or a small promotion; a product's own price 5 %.
    ("price_vs_own", 0.02),
    ("min_price_vs_own", 0.05),
    ("low_price_share", 0.05),
    ("special_share", 0.02),
    ("special_ratio", 0.5),
    // A stocktake miscount of one or two packages is routine on real platforms.
    ("stock_gap_units", 2.0),
    ("stock_gap_products", 1.0),
    // A day's delay in reporting.
    ("report_gap_days", 1.0),
];

/// [`FEATURE_FLOORS`] as the model's fit option.
pub fn feature_floors() -> BTreeMap<String, f64> {
    FEATURE_FLOORS
        .iter()
        .map(|(f, v)| (f.to_string(), *v))
        .collect()
}

/// The calibrated percentile from which an enterprise-day is flagged at false-alarm rate
/// `rate` (`1 − rate`).
pub fn threshold_for_rate(rate: f64) -> f64 {
    1.0 - rate
}
/// Days of the training window.
pub const DEFAULT_TRAIN_DAYS: i64 = 28;
/// Fewest training rows for a segment's model.
pub const MIN_SEGMENT_ROWS: usize = 50;
/// Days after an enterprise's first row in the feature table before its rows are judged.
pub const MIN_HISTORY_DAYS: i64 = 28;

/// Rows of enterprises whose first row in the table comes after the table's first day, within
/// [`MIN_HISTORY_DAYS`] of that first row (their baseline is not yet a history).
pub fn without_history(table: &FeatureTable) -> HashSet<usize> {
    let Some(start) = table.date.iter().min().copied() else {
        return HashSet::new();
    };
    let mut first: BTreeMap<&str, NaiveDate> = BTreeMap::new();
    for (e, d) in table.enterprise_id.iter().zip(&table.date) {
        let f = first.entry(e.as_str()).or_insert(*d);
        *f = (*f).min(*d);
    }
    (0..table.len())
        .filter(|&i| {
            let f = first[table.enterprise_id[i].as_str()];
            f > start && (table.date[i] - f).num_days() < MIN_HISTORY_DAYS
        })
        .collect()
}

/// Reasons kept per scored row.
pub const TOP_REASONS: usize = 3;

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// Fit on the run's data.
    Train {
        /// Families of the ensemble.
        families: Vec<Family>,
        /// Seed.
        seed: u64,
        /// Days of the training window.
        train_days: i64,
    },
    /// Load an artifact written by an earlier run or `pharmwatch model train`.
    Load(std::path::PathBuf),
    /// No model: rules only.
    Off,
}

impl Default for ModelSource {
    fn default() -> Self {
        Self::Train {
            families: pharmwatch_models::model::DEFAULT_FAMILIES.to_vec(),
            seed: 1,
            train_days: DEFAULT_TRAIN_DAYS,
        }
    }
}

/// The feature table of a window.
#[derive(Debug, Clone, Default)]
pub struct FeatureTable {
    /// Enterprise of each row.
    pub enterprise_id: Vec<String>,
    /// Day of each row.
    pub date: Vec<NaiveDate>,
    /// Segment of each row.
    pub segment: Vec<String>,
    /// Row-major values, `FEATURES.len()` per row (NaN where the feature has no basis).
    pub values: Vec<f64>,
}

impl FeatureTable {
    /// Rows.
    pub fn len(&self) -> usize {
        self.date.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.date.is_empty()
    }
    /// One row's values.
    pub fn row(&self, i: usize) -> &[f64] {
        let d = FEATURES.len();
        &self.values[i * d..(i + 1) * d]
    }

    /// Writes the table as CSV (enterprise_id, biz_date, segment, features…).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path).map_err(|e| CoreError::Csv {
            path: path.to_path_buf(),
            source: e,
        })?;
        let csv_err = |e| CoreError::Csv {
            path: path.to_path_buf(),
            source: e,
        };
        let mut header = vec!["enterprise_id", "biz_date", "segment"];
        header.extend(FEATURES);
        w.write_record(&header).map_err(csv_err)?;
        for i in 0..self.len() {
            let mut rec = vec![
                self.enterprise_id[i].clone(),
                self.date[i].to_string(),
                self.segment[i].clone(),
            ];
            rec.extend(self.row(i).iter().map(|v| {
                if v.is_finite() {
                    format!("{v}")
                } else {
                    String::new()
                }
            }));
            w.write_record(&rec).map_err(csv_err)?;
        }
        w.flush().map_err(|e| CoreError::io(path, e))
    }
}

/// Rounds a feature to 9 decimals. Window aggregates over parallel partitions may add in a
/// different order from run to run (and with a different query range), which changes the
/// last bits; rounding makes the features, and so the model's verdicts, reproducible.
fn settle(x: f64) -> f64 {
    if x.is_finite() && x.abs() < 1e9 {
        (x * 1e9).round() / 1e9
    } else {
        x
    }
}

/// Computes the feature table of `[from, to]` on a context whose tables are registered,
/// the day tables ([`DAY_TABLES`]) covering at least `[from − 28 days, to]`.
pub async fn features(
    ctx: &SessionContext,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<FeatureTable> {
    let sql = render(FEATURE_SQL, from, to, &Thresholds::default())?;
    let what = "features/enterprise_daily.sql";
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| CoreError::query(what, e))?
        .collect()
        .await
        .map_err(|e| CoreError::query(what, e))?;
    let mut t = FeatureTable::default();
    for b in &batches {
        let text = |c| -> Result<Vec<String>> {
            Ok(strings(what, b, c)?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect())
        };
        t.enterprise_id.extend(text("enterprise_id")?);
        t.segment.extend(text("segment")?);
        t.date.extend(dates(what, b, "biz_date")?);
        let cols = FEATURES
            .iter()
            .map(|f| Ok(floats(what, b, f)?.into_iter().map(settle).collect()))
            .collect::<Result<Vec<Vec<f64>>>>()?;
        t.values
            .extend(crate::table::row_major(&cols, b.num_rows()));
    }
    Ok(t)
}

/// Fits one model per segment on the table's rows, leaving out the enterprise-days in
/// `exclude` (those the rules flagged: the model learns normal from what passed the rules).
pub fn train(
    table: &FeatureTable,
    exclude: &HashSet<(String, NaiveDate)>,
    families: &[Family],
    seed: u64,
    trained_at: &str,
    window: (NaiveDate, NaiveDate),
) -> Result<(ModelSet, Vec<String>)> {
    let names: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
    let mut by_segment: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut left_out = 0;
    let young = without_history(table);
    for i in 0..table.len() {
        if exclude.contains(&(table.enterprise_id[i].clone(), table.date[i])) {
            left_out += 1;
            continue;
        }
        if young.contains(&i) {
            continue;
        }
        by_segment
            .entry(table.segment[i].as_str())
            .or_default()
            .extend_from_slice(table.row(i));
    }
    let mut set = ModelSet {
        format: pharmwatch_models::model::FORMAT,
        segment_column: Some("segment".to_string()),
        segments: BTreeMap::new(),
    };
    let mut notes = vec![
        format!("{left_out} enterprise-days flagged by the rules left out of training"),
        format!(
            "{} enterprise-days of enterprises new in the window (less than {MIN_HISTORY_DAYS} days since their first report) neither trained on nor scored",
            young.len()
        ),
    ];
    for (segment, rows) in by_segment {
        let n = rows.len() / names.len();
        if n < MIN_SEGMENT_ROWS {
            notes.push(format!(
                "segment {segment}: {n} training rows, fewer than {MIN_SEGMENT_ROWS}: not scored"
            ));
            continue;
        }
        let opts = FitOptions {
            families: families.to_vec(),
            seed,
            version: format!("pharmwatch {} features v1", env!("CARGO_PKG_VERSION")),
            trained_at: trained_at.to_string(),
            data_window: Some(format!("{}..{}", window.0, window.1)),
            floors: feature_floors(),
            ..FitOptions::default()
        };
        let model = Model::fit(&names, &rows, &opts)
            .map_err(|e| CoreError::model(format!("segment {segment}"), e))?;
        for s in &model.skipped {
            notes.push(format!(
                "segment {segment}: detector {} skipped: {}",
                s.family.as_str(),
                s.reason
            ));
        }
        set.segments.insert(segment.to_string(), model);
    }
    Ok((set, notes))
}

/// Checks that a loaded artifact has this build's features.
pub fn check_features(set: &ModelSet, path: &Path) -> Result<()> {
    set.check_format()
        .map_err(|e| CoreError::model(path.display().to_string(), e))?;
    for (segment, m) in &set.segments {
        if m.features != FEATURES {
            return Err(CoreError::Config(format!(
                "{}: segment {segment} was trained on features [{}], this build computes [{}]",
                path.display(),
                m.features.join(", "),
                FEATURES.join(", ")
            )));
        }
    }
    Ok(())
}

/// The model's verdict on one enterprise-day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyScore {
    /// Enterprise.
    pub enterprise_id: String,
    /// Day.
    pub date: NaiveDate,
    /// Segment.
    pub segment: String,
    /// Ensemble score.
    pub score: f64,
    /// Calibrated percentile in the segment's clean distribution: `1 − tail probability`.
    pub percentile: f64,
    /// The threshold it was judged against: `1 − the target false-alarm rate`.
    pub threshold: f64,
    /// Whether the percentile reaches the threshold (tail probability ≤ the target rate).
    pub flagged: bool,
    /// The top reasons, most important first.
    pub reasons: Vec<String>,
    /// The same reasons in Chinese.
    pub reasons_zh: Vec<String>,
}

/// Scores the rows of `[from, to]` against `threshold` (a calibrated percentile, `1 − α`).
/// Rows of segments without a model are left out.
pub fn score(
    set: &ModelSet,
    table: &FeatureTable,
    from: NaiveDate,
    to: NaiveDate,
    threshold: f64,
) -> Vec<AnomalyScore> {
    let mut out = Vec::new();
    let young = without_history(table);
    for i in 0..table.len() {
        let date = table.date[i];
        if date < from || date > to || young.contains(&i) {
            continue;
        }
        let Ok(model) = set.model(&table.segment[i]) else {
            continue;
        };
        let row = table.row(i);
        let s = model.score_row(row);
        // Explanations only where someone will read them: flagged rows and the upper tail.
        let (reasons, reasons_zh) = if s.percentile >= 0.9 || s.percentile >= threshold {
            let top: Vec<Contribution> = model.explain(row).into_iter().take(TOP_REASONS).collect();
            (
                top.iter().map(feature_reason).collect(),
                top.iter().map(feature_reason_zh).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        out.push(AnomalyScore {
            enterprise_id: table.enterprise_id[i].clone(),
            date,
            segment: table.segment[i].clone(),
            score: s.score,
            percentile: s.percentile,
            threshold,
            flagged: s.percentile >= threshold,
            reasons,
            reasons_zh,
        });
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// A reason a supervisor can read, for one feature's contribution.
pub fn feature_reason(c: &Contribution) -> String {
    let v = c.value;
    let t = c.typical;
    let text = match c.feature.as_str() {
        "sales_ratio" => format!("sales {}× the enterprise's 28-day daily mean", short(v)),
        "products_sold_ratio" => {
            format!("{}× the usual number of products sold in a day", short(v))
        }
        "sales_up_share" => format!(
            "{} of the products sold were above their usual range (typical {})",
            pct(v),
            pct(t)
        ),
        "purchase_ratio" => format!("purchases {}× the 28-day daily mean", short(v)),
        "production_ratio" => format!("production {}× the 28-day daily mean", short(v)),
        "purchase_sales_7d" => format!(
            "bought {} packages per package sold over 7 days (typical {})",
            short(v),
            short(t)
        ),
        "price_vs_own" => format!("prices at {} of the enterprise's own 28-day prices", pct(v)),
        "min_price_vs_own" => format!("a product priced at {} of its own 28-day price", pct(v)),
        "low_price_share" => format!(
            "{} of packages sold below 90% of the enterprise's usual price (typical {})",
            pct(v),
            pct(t)
        ),
        "special_share" => format!(
            "narcotic/psychotropic/ephedrine products {} of packages sold (typical {})",
            pct(v),
            pct(t)
        ),
        "special_ratio" => format!("special-drug sales {}× the 28-day daily mean", short(v)),
        "stock_gap_units" => format!(
            "stock records off by {} packages (typical {})",
            short(v),
            short(t)
        ),
        "stock_gap_products" => format!("{} products whose stock does not reconcile", short(v)),
        "report_gap_days" => format!("reported after a gap of {} days", short(v)),
        _ => return c.plain_reason(),
    };
    if v.is_finite() {
        text
    } else {
        format!("{}: no value", c.feature)
    }
}

/// The reason of [`feature_reason`] in Chinese, from the same figures.
pub fn feature_reason_zh(c: &Contribution) -> String {
    let v = c.value;
    let t = c.typical;
    if !v.is_finite() {
        return format!("{}：无数值", c.feature);
    }
    match c.feature.as_str() {
        "sales_ratio" => format!("销量为本企业前 28 日日均的 {} 倍", short(v)),
        "products_sold_ratio" => format!("当日销售品种数为平常的 {} 倍", short(v)),
        "sales_up_share" => format!("{} 的品种销量高于其平常范围（通常 {}）", pct(v), pct(t)),
        "purchase_ratio" => format!("购进量为前 28 日日均的 {} 倍", short(v)),
        "production_ratio" => format!("产量为前 28 日日均的 {} 倍", short(v)),
        "purchase_sales_7d" => format!(
            "近 7 日每售出 1 盒购进 {} 盒（通常 {}）",
            short(v),
            short(t)
        ),
        "price_vs_own" => format!("售价为本企业前 28 日价格的 {}", pct(v)),
        "min_price_vs_own" => format!("有品种售价仅为其前 28 日价格的 {}", pct(v)),
        "low_price_share" => format!(
            "{} 的销量低于本企业平常价格的 90%（通常 {}）",
            pct(v),
            pct(t)
        ),
        "special_share" => format!(
            "麻醉、精神药品及含麻黄碱类药品占销量的 {}（通常 {}）",
            pct(v),
            pct(t)
        ),
        "special_ratio" => format!("特殊管理药品销量为前 28 日日均的 {} 倍", short(v)),
        "stock_gap_units" => format!("库存记录相差 {} 盒（通常 {}）", short(v), short(t)),
        "stock_gap_products" => format!("{} 个品种库存对不上", short(v)),
        "report_gap_days" => format!("间隔 {} 日后才上报数据", short(v)),
        other => format!("{other} = {}（通常 {}）", short(v), short(t)),
    }
}

/// Writes an artifact atomically.
pub fn write_artifact(out: &Path, set: &ModelSet) -> Result<()> {
    let text = serde_json::to_string_pretty(set).map_err(|e| CoreError::Internal(e.to_string()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    }
    let tmp = out.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| CoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| CoreError::io(out, e))
}

/// Reads a model artifact (`model.json`), checking its format first (an artifact of another
/// format is refused with the reason and what to do, not with a missing field).
pub fn read_artifact(path: &Path) -> Result<ModelSet> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    #[derive(serde::Deserialize)]
    struct Header {
        format: u32,
    }
    if let Ok(h) = serde_json::from_str::<Header>(&text)
        && h.format != pharmwatch_models::model::FORMAT
    {
        return Err(CoreError::model(
            path.display().to_string(),
            pharmwatch_models::ModelError::Format {
                found: h.format,
                supported: pharmwatch_models::model::FORMAT,
            },
        ));
    }
    let set: ModelSet = serde_json::from_str(&text).map_err(|e| {
        CoreError::Config(format!(
            "{}: not a pharmwatch model artifact: {e}",
            path.display()
        ))
    })?;
    set.check_format()
        .map_err(|e| CoreError::model(path.display().to_string(), e))?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(feature: &str, value: f64, typical: f64) -> Contribution {
        Contribution {
            index: 0,
            feature: feature.to_string(),
            value,
            typical,
            z: 5.0,
            share: 0.5,
        }
    }

    #[test]
    fn every_feature_has_a_reason_a_supervisor_can_read() {
        for f in FEATURES {
            let r = feature_reason(&c(f, 0.8, 1.0));
            assert!(!r.contains(" = "), "{f} falls back to the plain form: {r}");
        }
        assert_eq!(
            feature_reason(&c("sales_ratio", 4.1, 1.0)),
            "sales 4.1× the enterprise's 28-day daily mean"
        );
        assert_eq!(
            feature_reason(&c("low_price_share", 0.25, 0.0)),
            "25% of packages sold below 90% of the enterprise's usual price (typical 0%)"
        );
        assert_eq!(
            feature_reason(&c("stock_gap_units", f64::NAN, 0.0)),
            "stock_gap_units: no value"
        );
        // Columns of other tables get the plain form.
        assert!(feature_reason(&c("x", 2.0, 1.0)).starts_with("x = 2 (typical 1"));
    }

    #[test]
    fn enterprises_new_in_the_window_wait_for_a_history() {
        let d = |n: i64| NaiveDate::from_ymd_opt(2026, 10, 1).unwrap() + chrono::Duration::days(n);
        let mut t = FeatureTable::default();
        // E1 from the first day (established); E2 opens on day 5.
        for n in 0..40 {
            t.enterprise_id.push("E1".into());
            t.date.push(d(n));
            t.segment.push("pharmacy".into());
            t.values.extend(vec![1.0; FEATURES.len()]);
            if n >= 5 {
                t.enterprise_id.push("E2".into());
                t.date.push(d(n));
                t.segment.push("pharmacy".into());
                t.values.extend(vec![1.0; FEATURES.len()]);
            }
        }
        let young = without_history(&t);
        let dates: Vec<i64> = young
            .iter()
            .map(|&i| (t.date[i] - d(0)).num_days())
            .collect();
        assert_eq!(young.len(), 28, "{dates:?}");
        assert!(young.iter().all(|&i| t.enterprise_id[i] == "E2"));
        assert!(dates.iter().all(|n| (5..33).contains(n)));
    }

    #[test]
    fn every_feature_has_a_scale_floor() {
        let floors = feature_floors();
        for f in FEATURES {
            assert!(floors.get(*f).is_some_and(|v| *v > 0.0), "{f} has no floor");
        }
        assert_eq!(floors.len(), FEATURES.len());
        assert!((threshold_for_rate(DEFAULT_FALSE_ALARM_RATE) - DEFAULT_THRESHOLD).abs() < 1e-15);
    }

    #[test]
    fn a_model_flag_alone_stays_at_grade_b_whatever_the_credit() {
        for credit in ["A", "B", "C", "D"] {
            let (score, grade) = crate::risk::single_item_score("model_anomaly", credit);
            assert_eq!(grade, "B", "credit {credit}: score {score}");
        }
    }

    #[test]
    fn an_artifact_of_the_old_format_is_refused_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("pw-anomaly-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("model.json");
        std::fs::write(&path, r#"{"format":1,"segment_column":null,"segments":{}}"#)
            .expect("write");
        let e = read_artifact(&path)
            .expect_err("format 1 is refused")
            .to_string();
        assert!(e.contains("format 1") && e.contains("retrain"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_day_table_stages_are_the_day_tables_in_order() {
        let staged: Vec<&str> = DAY_TABLE_STAGES
            .iter()
            .flat_map(|s| s.iter().map(|(n, _)| *n))
            .collect();
        let tables: Vec<&str> = DAY_TABLES.iter().map(|(n, _)| *n).collect();
        assert_eq!(staged, tables);
        let inputs: Vec<&str> = day_table_inputs("enterprise_flows")
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(inputs, ["sales_daily", "inventory_days"]);
        assert_eq!(day_table_inputs("sales_daily").count(), 0);
        // A table reads only tables of earlier stages.
        for stage in DAY_TABLE_STAGES {
            for (name, sql) in *stage {
                for (other, _) in DAY_TABLES.iter().filter(|(o, _)| o != name) {
                    if sql.contains(&format!("FROM {other} ")) {
                        assert!(
                            day_table_inputs(name).any(|(n, _)| n == other),
                            "{name} reads {other}, which is not built before it"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_feature_query_returns_the_declared_columns() {
        for f in FEATURES {
            assert!(
                FEATURE_SQL.contains(&format!(" AS {f},"))
                    || FEATURE_SQL.contains(&format!(" AS {f}\n")),
                "{f} is not a column of enterprise_daily.sql"
            );
        }
    }
}
