//! Windowed risk indicators: the SQL in `pipeline/sql/indicators/*.sql`, run by DataFusion over
//! the registered tables (`sales`, `purchase`, `production`, `inventory`, `product_test`,
//! `products`, `batches`, `run_dates`) and the feature tables built first ([`FEATURES`]).
//!
//! Every query returns hits of one shape — `enterprise_id, product_id, biz_date, indicator,
//! window_start, window_end, observed, expected, detail` — for business days in the run's
//! range only; baselines look back before the range. Thresholds are substituted into the SQL
//! as `${name}` tokens from [`Thresholds`] by [`render`], so they are data, not code. Each query
//! has golden tests beside it (`pipeline/sql/indicators/*.slt`, run by this crate's `it` test
//! binary), which bind the run through the same [`render`], [`build_features`] and
//! [`register_run_dates`] as the nightly job.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Date32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Float64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The indicator queries: file name and SQL text.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "inventory.sql",
        include_str!("../../sql/indicators/inventory.sql"),
    ),
    (
        "retail_spike.sql",
        include_str!("../../sql/indicators/retail_spike.sql"),
    ),
    (
        "order_spike.sql",
        include_str!("../../sql/indicators/order_spike.sql"),
    ),
    (
        "batch_quality.sql",
        include_str!("../../sql/indicators/batch_quality.sql"),
    ),
    (
        "trace_duplicate.sql",
        include_str!("../../sql/indicators/trace_duplicate.sql"),
    ),
    ("price.sql", include_str!("../../sql/indicators/price.sql")),
    (
        "reporting.sql",
        include_str!("../../sql/indicators/reporting.sql"),
    ),
];

/// Feature tables built before the indicator queries (`CREATE TABLE name AS …`): name and SQL.
pub const FEATURES: &[(&str, &str)] = &[
    (
        "retail_daily",
        include_str!("../../sql/features/retail_daily.sql"),
    ),
    (
        "market_daily",
        include_str!("../../sql/features/market_daily.sql"),
    ),
    (
        "reporting_daily",
        include_str!("../../sql/features/reporting_daily.sql"),
    ),
];

/// Days before `${from}` a feature table's SQL reads (`[from − 31 days, to]`: the reporting
/// indicator looks 30 days back, the retail ones 28).
pub const FEATURE_WINDOW_DAYS: i64 = 31;

/// Days before the first judged day the indicators read of feature table `name`: the
/// reporting rule's 31 for `reporting_daily`, the retail and price rules' 28 for the others
/// (a day store registers no more, so the tables held in memory are no larger than the rules
/// need; the SQL's own window, [`FEATURE_WINDOW_DAYS`], is the longest of them).
pub fn feature_lookback(name: &str) -> i64 {
    if name == "reporting_daily" {
        FEATURE_WINDOW_DAYS
    } else {
        28
    }
}

/// A feature table's SQL rendered for the rows of the days `first ..= last` only (its window
/// `[from − 31 days, to]` with `from = first + 31 days`).
pub fn render_feature_days(
    sql: &str,
    first: NaiveDate,
    last: NaiveDate,
    t: &Thresholds,
) -> Result<String> {
    render(
        sql,
        first + chrono::Duration::days(FEATURE_WINDOW_DAYS),
        last,
        t,
    )
}

/// Indicator names, the same words as the simulator's label kinds.
pub const INDICATORS: &[&str] = &[
    "inventory_mismatch",
    "sold_not_bought",
    "sales_spike",
    "purchase_spike",
    "production_spike",
    "special_drug_volume",
    "expired_batch_sold",
    "failed_batch_sold",
    "trace_code_duplicate",
    "price_below_median",
    "reporting_stopped",
];

/// Days of history the queries read before the first day of a run.
pub const LOOKBACK_DAYS: i64 = 60;

/// Version of the rule set, printed on every risk item.
pub const RULE_VERSION: &str = "rules-2026.11";

/// Thresholds of the indicator rules. Defaults are documented in each SQL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Smallest stock gap (packages) that counts as a mismatch.
    pub mismatch_min: f64,
    /// Smallest stock gap as a share of available stock.
    pub mismatch_share: f64,
    /// Sold-not-bought where yesterday's count of the product exists: smallest excess of the
    /// sales over opening + inflow (packages); a product not counted yesterday needs none.
    pub sold_excess_min: f64,
    /// Sales spike: ratio to the 28-day daily mean.
    pub spike_ratio: f64,
    /// Sales spike: excess over the mean in units of √mean.
    pub spike_z: f64,
    /// Sales spike: extra packages on top of the √mean term.
    pub spike_abs: f64,
    /// Special drugs: ratio to the 28-day daily mean.
    pub special_ratio: f64,
    /// Special drugs: excess in units of √mean.
    pub special_z: f64,
    /// Special drugs: extra packages.
    pub special_abs: f64,
    /// Retail spikes are judged only after this many active days in the prior 28.
    pub min_active_days: u32,
    /// Retail spikes are judged only when the product's baseline (from its first sale in the
    /// prior 28 days) spans at least this many days: a newly listed product has no baseline.
    pub min_listed_days: u32,
    /// A day sold at ≤ this share of the enterprise's own usual price of the product is a
    /// promotion day (retail spikes).
    pub promo_price_ratio: f64,
    /// On a promotion day the expected retail sales are the baseline mean × this lift.
    pub promo_lift: f64,
    /// Purchase/production spike: ratio to the largest day in the prior 28 days.
    pub lumpy_max_ratio: f64,
    /// Purchase/production spike: ratio to the 28-day daily mean.
    pub lumpy_mean_ratio: f64,
    /// Price hit below this share of the market reference.
    pub price_ratio: f64,
    /// Price hit below this share of the enterprise's own usual price of the product …
    pub own_price_ratio: f64,
    /// … when also below this share of the market reference.
    pub own_market_ratio: f64,
    /// The own usual price needs sales on at least this many of the prior 28 days.
    pub own_price_days: u32,
    /// Reporting stopped after this many silent days.
    pub stop_days: u32,
    /// … if the enterprise reported on at least this many of days D−30 … D−3.
    pub stop_min_active: u32,
    /// Trace codes are looked up over this many days.
    pub trace_lookback_days: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            mismatch_min: 5.0,
            mismatch_share: 0.02,
            sold_excess_min: 3.0,
            spike_ratio: 3.0,
            spike_z: 4.5,
            spike_abs: 2.0,
            special_ratio: 2.5,
            special_z: 4.0,
            special_abs: 3.0,
            min_active_days: 20,
            min_listed_days: 14,
            promo_price_ratio: 0.93,
            promo_lift: 2.5,
            lumpy_max_ratio: 2.5,
            lumpy_mean_ratio: 4.0,
            price_ratio: 0.5,
            own_price_ratio: 0.65,
            own_market_ratio: 0.8,
            own_price_days: 7,
            stop_days: 3,
            stop_min_active: 20,
            trace_lookback_days: 60,
        }
    }
}

impl Thresholds {
    /// Days before a sale that the trace-duplicate rule looks back over (at most the lake's
    /// [`LOOKBACK_DAYS`]).
    pub fn trace_lookback(&self) -> i64 {
        i64::from(self.trace_lookback_days.min(LOOKBACK_DAYS as u32))
    }

    /// The `${name}` tokens of the SQL and their values.
    pub fn tokens(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("mismatch_min", num(self.mismatch_min));
        m.insert("mismatch_share", num(self.mismatch_share));
        m.insert("sold_excess_min", num(self.sold_excess_min));
        m.insert("spike_ratio", num(self.spike_ratio));
        m.insert("spike_z", num(self.spike_z));
        m.insert("spike_abs", num(self.spike_abs));
        m.insert("special_ratio", num(self.special_ratio));
        m.insert("special_z", num(self.special_z));
        m.insert("special_abs", num(self.special_abs));
        m.insert("min_active_days", self.min_active_days.to_string());
        m.insert("min_listed_days", self.min_listed_days.to_string());
        m.insert("promo_price_ratio", num(self.promo_price_ratio));
        m.insert("promo_lift", num(self.promo_lift));
        m.insert("lumpy_max_ratio", num(self.lumpy_max_ratio));
        m.insert("lumpy_mean_ratio", num(self.lumpy_mean_ratio));
        m.insert("price_ratio", num(self.price_ratio));
        m.insert("own_price_ratio", num(self.own_price_ratio));
        m.insert("own_market_ratio", num(self.own_market_ratio));
        m.insert("own_price_days", self.own_price_days.to_string());
        m.insert("stop_days", self.stop_days.to_string());
        m.insert("stop_min_active", self.stop_min_active.to_string());
        m.insert(
            "trace_lookback_days",
            self.trace_lookback_days
                .min(LOOKBACK_DAYS as u32)
                .to_string(),
        );
        m
    }
}

fn num(x: f64) -> String {
    // Always a decimal literal, so SQL arithmetic stays in floating point.
    format!("{x:?}")
}

/// Substitutes `${from}`, `${to}` and the threshold tokens into a query.
pub fn render(sql: &str, from: NaiveDate, to: NaiveDate, t: &Thresholds) -> Result<String> {
    let mut out = sql
        .replace("${from}", &format!("DATE '{}'", from.format("%Y-%m-%d")))
        .replace("${to}", &format!("DATE '{}'", to.format("%Y-%m-%d")));
    for (k, v) in t.tokens() {
        out = out.replace(&format!("${{{k}}}"), &v);
    }
    if let Some(pos) = out.find("${") {
        let end = out[pos..]
            .find('}')
            .map(|e| pos + e + 1)
            .unwrap_or(out.len());
        return Err(CoreError::Internal(format!(
            "unknown SQL token {}",
            &out[pos..end]
        )));
    }
    Ok(out)
}

/// One indicator hit: the evidence of one risk item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Enterprise credit code.
    pub enterprise_id: String,
    /// Product id; `None` for enterprise-level indicators.
    pub product_id: Option<String>,
    /// Business day the hit belongs to.
    pub date: NaiveDate,
    /// Indicator name.
    pub indicator: String,
    /// First day of the evidence window.
    pub window_start: NaiveDate,
    /// Last day of the evidence window.
    pub window_end: NaiveDate,
    /// Observed value.
    pub observed: f64,
    /// Expected value (baseline, bound or reference).
    pub expected: f64,
    /// Extra evidence as `key=value;…`.
    pub detail: String,
}

impl Hit {
    /// Value of a `key=value` pair in the detail.
    pub fn detail_value(&self, key: &str) -> Option<&str> {
        self.detail
            .split(';')
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// Builds the feature tables of [`FEATURES`] for `[from, to]` (`CREATE TABLE name AS …`), which
/// the indicator queries read. Returns each table's wall time, named `name.sql`.
pub async fn build_features(
    ctx: &SessionContext,
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<(String, f64)>> {
    build_tables(ctx, FEATURES, from, to, t).await
}

/// Builds the tables `tables` (name, SQL over `[from − 28 days, to]`) for `[from, to]`
/// (`CREATE TABLE name AS …`). Returns each table's wall time, named `name.sql`.
pub async fn build_tables(
    ctx: &SessionContext,
    tables: &[(&str, &str)],
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<(String, f64)>> {
    let mut timings = Vec::with_capacity(tables.len());
    for (name, sql) in tables {
        let started = std::time::Instant::now();
        let text = format!("CREATE TABLE {name} AS {}", render(sql, from, to, t)?);
        let df = ctx
            .sql(&text)
            .await
            .map_err(|e| CoreError::query(name, e))?;
        df.collect().await.map_err(|e| CoreError::query(name, e))?;
        timings.push((format!("{name}.sql"), started.elapsed().as_secs_f64()));
    }
    Ok(timings)
}

/// Registers table `run_dates` (one non-null Date32 column `run_date`): the business days
/// `from ..= to` of the run, which `reporting.sql` judges one by one.
pub fn register_run_dates(ctx: &SessionContext, from: NaiveDate, to: NaiveDate) -> Result<()> {
    let days: Vec<i32> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(Date32Type::from_naive_date)
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "run_date",
        DataType::Date32,
        false,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Date32Array::from(days))])
        .map_err(|e| CoreError::arrow("run_dates", e))?;
    let table = MemTable::try_new(schema, vec![vec![batch]])
        .map_err(|e| CoreError::query("run_dates", e))?;
    ctx.register_table("run_dates", Arc::new(table))
        .map_err(|e| CoreError::query("run_dates", e))?;
    Ok(())
}

/// Runs every indicator query for `[from, to]` on a context whose tables are registered,
/// advancing `progress` by one per query. Returns the hits and each query's wall time.
pub async fn run_all(
    ctx: &SessionContext,
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Hit>, Vec<(String, f64)>)> {
    let mut timings = build_features(ctx, from, to, t).await?;
    let (hits, queried) = run_queries(ctx, from, to, t, progress).await?;
    timings.extend(queried);
    Ok((hits, timings))
}

/// Runs every indicator query for `[from, to]` on a context whose tables, the feature tables
/// of [`FEATURES`] included, are registered; advances `progress` by one per query. Returns the
/// hits sorted ([`sort_hits`]) and each query's wall time.
pub async fn run_queries(
    ctx: &SessionContext,
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Hit>, Vec<(String, f64)>)> {
    run_queries_except(ctx, &[], from, to, t, progress).await
}

/// Ranges shorter than this many days run their indicator queries concurrently
/// ([`run_queries_except`]).
const CONCURRENT_RANGE_DAYS: i64 = 2;

/// [`run_queries`] but for the queries named in `skip` (run elsewhere by the caller).
///
/// The queries do not depend on one another. For a range of one or two days (a next night)
/// as many run at a time as there are cores, so one query's single-threaded stretches
/// (planning, opening files, a final merge) overlap another's scan; a longer range (a first
/// night's or a backfill's chunk) runs them one at a time: each is then large enough to keep
/// every core busy alone, and two at once would hold both their hash tables (at 10,000
/// enterprises a first night's peak memory is what bounds it). Each timing is that query's own
/// wall time (they may overlap, so their sum can be more than the phase's); the timings are in
/// [`QUERIES`] order whatever order the queries finished in.
pub async fn run_queries_except(
    ctx: &SessionContext,
    skip: &[&str],
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Hit>, Vec<(String, f64)>)> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let lanes = if (to - from).num_days() < CONCURRENT_RANGE_DAYS {
        crate::query::lanes()
    } else {
        1
    };
    let runs = QUERIES
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| !skip.contains(name))
        .map(|(i, (name, sql))| async move {
            let started = std::time::Instant::now();
            let hits = run_query(ctx, name, sql, from, to, t).await?;
            progress.inc(1);
            Ok::<_, CoreError>((i, name, hits, started.elapsed().as_secs_f64()))
        });
    let mut done: Vec<_> = stream::iter(runs)
        .buffer_unordered(lanes)
        .try_collect()
        .await?;
    progress.finish_and_clear();
    done.sort_by_key(|(i, ..)| *i);
    let mut hits = Vec::new();
    let mut timings = Vec::with_capacity(done.len());
    for (_, name, found, secs) in done {
        hits.extend(found);
        timings.push((name.to_string(), secs));
    }
    sort_hits(&mut hits);
    Ok((hits, timings))
}

/// The SQL of indicator query `name` (one of [`QUERIES`]).
pub fn query_sql(name: &str) -> Option<&'static str> {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sql)| *sql)
}

/// Sorts hits by day, enterprise, indicator, product and detail: the order of every list of
/// hits the nightly job hands on, however the hits were found.
pub fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| {
        (
            a.date,
            &a.enterprise_id,
            &a.indicator,
            &a.product_id,
            &a.detail,
        )
            .cmp(&(
                b.date,
                &b.enterprise_id,
                &b.indicator,
                &b.product_id,
                &b.detail,
            ))
    });
}

/// Runs one indicator query and converts its rows to hits.
pub async fn run_query(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    from: NaiveDate,
    to: NaiveDate,
    t: &Thresholds,
) -> Result<Vec<Hit>> {
    let text = render(sql, from, to, t)?;
    let df = ctx
        .sql(&text)
        .await
        .map_err(|e| CoreError::query(name, e))?;
    let batches = df.collect().await.map_err(|e| CoreError::query(name, e))?;
    let mut hits = Vec::new();
    for b in &batches {
        hits.extend(batch_to_hits(name, b)?);
    }
    Ok(hits)
}

fn col<'a>(name: &str, b: &'a RecordBatch, c: &str) -> Result<&'a dyn Array> {
    b.column_by_name(c)
        .map(|a| a.as_ref())
        .ok_or_else(|| CoreError::Internal(format!("{name}: result has no column {c}")))
}

/// Column `c` of a result batch as text (NULL → None); errors name the query `name`.
pub fn strings(name: &str, b: &RecordBatch, c: &str) -> Result<Vec<Option<String>>> {
    let a = col(name, b, c)?;
    let cast = datafusion::arrow::compute::cast(a, &DataType::Utf8)
        .map_err(|e| CoreError::arrow(format!("{name}.{c}"), e))?;
    let s = cast.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| {
            if s.is_null(i) {
                None
            } else {
                Some(s.value(i).to_string())
            }
        })
        .collect())
}

/// Column `c` of a result batch as dates.
pub fn dates(name: &str, b: &RecordBatch, c: &str) -> Result<Vec<NaiveDate>> {
    let a = col(name, b, c)?;
    let cast = datafusion::arrow::compute::cast(a, &DataType::Date32)
        .map_err(|e| CoreError::arrow(format!("{name}.{c}"), e))?;
    let d = cast.as_primitive::<Date32Type>();
    (0..d.len())
        .map(|i| {
            d.value_as_date(i)
                .ok_or_else(|| CoreError::Internal(format!("{name}.{c}: row {i} is not a date")))
        })
        .collect()
}

/// Column `c` of a result batch as f64 (NULL → NaN).
pub fn floats(name: &str, b: &RecordBatch, c: &str) -> Result<Vec<f64>> {
    let a = col(name, b, c)?;
    let cast = datafusion::arrow::compute::cast(a, &DataType::Float64)
        .map_err(|e| CoreError::arrow(format!("{name}.{c}"), e))?;
    let f = cast.as_primitive::<Float64Type>();
    Ok((0..f.len())
        .map(|i| if f.is_null(i) { f64::NAN } else { f.value(i) })
        .collect())
}

/// Converts a result batch of the hit shape to hits.
pub fn batch_to_hits(name: &str, b: &RecordBatch) -> Result<Vec<Hit>> {
    let ent = strings(name, b, "enterprise_id")?;
    let prod = strings(name, b, "product_id")?;
    let day = dates(name, b, "biz_date")?;
    let ind = strings(name, b, "indicator")?;
    let ws = dates(name, b, "window_start")?;
    let we = dates(name, b, "window_end")?;
    let obs = floats(name, b, "observed")?;
    let exp = floats(name, b, "expected")?;
    let det = strings(name, b, "detail")?;
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        out.push(Hit {
            enterprise_id: ent[i].clone().unwrap_or_default(),
            product_id: prod[i].clone(),
            date: day[i],
            indicator: ind[i].clone().unwrap_or_default(),
            window_start: ws[i],
            window_end: we[i],
            observed: obs[i],
            expected: exp[i],
            detail: det[i].clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_renders_without_leftover_tokens() {
        let d = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        for (name, sql) in QUERIES.iter().chain(FEATURES) {
            let text = render(sql, d, d, &Thresholds::default()).unwrap();
            assert!(!text.contains("${"), "{name}");
            assert!(text.contains("DATE '2026-10-01'"), "{name}");
        }
    }

    #[test]
    fn unknown_tokens_are_refused() {
        let d = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
        let err = render("SELECT ${nope}", d, d, &Thresholds::default()).unwrap_err();
        assert!(err.to_string().contains("${nope}"));
    }

    #[test]
    fn detail_values_are_found_by_key() {
        let h = Hit {
            enterprise_id: "e".into(),
            product_id: None,
            date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            indicator: "x".into(),
            window_start: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            window_end: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            observed: 1.0,
            expected: 0.0,
            detail: "batch=B1;expiry=2026-09-01".into(),
        };
        assert_eq!(h.detail_value("batch"), Some("B1"));
        assert_eq!(h.detail_value("expiry"), Some("2026-09-01"));
        assert_eq!(h.detail_value("missing"), None);
    }
}
