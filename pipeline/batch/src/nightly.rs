//! The nightly job: lake (and input files) in, windowed indicators, the day's risk list out.
//!
//! Steps: load the reference tables; read and validate input files (bad rows to the dead
//! letter); register each event kind as one table over the lake partitions from 60 days
//! before the first day the rules judge (the model's training window, or `from`) to `to`, plus
//! the accepted input rows; the rule hits and the model features of each day, read back from
//! the day store ([`crate::days`]) where a night before computed them from the same files,
//! else computed by the indicator and feature SQL (one run per range of consecutive days) and
//! stored; fit (or load) the anomaly model and score `[from, to]`; score and rank; write
//! `risk_list.{parquet,csv,json}`, `model.json` (the artifact), `features.csv`,
//! `dead_letter.ndjson` and `run.json` into the output directory. [`run_with`] adds the closed
//! loop: the case-ledger sweep and the caution notices under `notices/`;
//! [`compact_closed_days`] compacts the partitions a night read and keeps its day store valid.
//!
//! Invariants: for input files `read = accepted + rejected`; the risk list holds hits of
//! business days in `[from, to]` only; a day's hits and features are the same whether read
//! back or computed, alone or in a range; the output files are written whole (a failed run
//! leaves the previous outputs untouched until it succeeds).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use pharmwatch_core::query::{register_urls, run_sql, session, table_rows};
use pharmwatch_core::remote_lake::{self, LakeSource};
use serde::{Deserialize, Serialize};

use pharmwatch_schemas::{Enterprise, EventKind, Product, ReferenceKind};

use crate::days::{self, DayStore, LakeDays, Part};
use crate::error::Result;
use pharmwatch_core::anomaly::{self, AnomalyScore, ModelSource};
use pharmwatch_core::baseline;
use pharmwatch_core::compact;
use pharmwatch_core::error::CoreError;
use pharmwatch_core::indicators::{self, Hit, INDICATORS, LOOKBACK_DAYS, Thresholds};
use pharmwatch_core::ingest::{self, InputSpec, ReferenceSets};
use pharmwatch_core::risk::{self, RiskRow};

pub use crate::summary::{
    DayCounts, ModelSummary, NightlyOutput, NightlySummary, SegmentCalibration, read_run, report,
};

/// The `[nightly]` table of `pharmwatch.toml`: what a run reads from the configuration when
/// the command line does not say (the command line wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NightlySettings {
    /// Days of the model's training window, ending with the run's last day.
    pub train_days: i64,
    /// Target false-alarm rate of the model's flags: the share of clean enterprise-days it
    /// flags (each segment's score tail is calibrated to it; see `pharmwatch_core::anomaly`).
    /// Between 0 (exclusive) and [`MAX_FALSE_ALARM_RATE`].
    pub model_false_alarm_rate: f64,
    /// Seed of every random choice of the model.
    pub model_seed: u64,
    /// Indicator thresholds.
    pub thresholds: Thresholds,
}

impl Default for NightlySettings {
    fn default() -> Self {
        Self {
            train_days: anomaly::DEFAULT_TRAIN_DAYS,
            model_false_alarm_rate: anomaly::DEFAULT_FALSE_ALARM_RATE,
            model_seed: 1,
            thresholds: Thresholds::default(),
        }
    }
}

impl pharmwatch_core::config::Section for NightlySettings {
    const NAME: &'static str = "nightly";
}

/// Largest target false-alarm rate: beyond it the flag threshold would fall into the body
/// of the score distribution, where the tail model does not apply.
pub const MAX_FALSE_ALARM_RATE: f64 = 0.05;

/// Checks a target false-alarm rate (`what` names the key or flag in the message).
pub fn check_false_alarm_rate(rate: f64, what: &str) -> Result<()> {
    if !(rate > 0.0 && rate <= MAX_FALSE_ALARM_RATE) {
        return Err(CoreError::Config(format!(
            "{what} must be above 0 and at most {MAX_FALSE_ALARM_RATE} (a share of clean \
             enterprise-days, e.g. 0.001), got {rate}"
        ))
        .into());
    }
    Ok(())
}

impl NightlySettings {
    /// The calibrated percentile from which the model flags (`1 − model_false_alarm_rate`).
    pub fn anomaly_threshold(&self) -> f64 {
        anomaly::threshold_for_rate(self.model_false_alarm_rate)
    }

    /// Checks the values a run cannot use.
    pub fn validate(&self) -> Result<()> {
        check_false_alarm_rate(
            self.model_false_alarm_rate,
            "nightly.model_false_alarm_rate",
        )?;
        if self.train_days < 1 {
            return Err(CoreError::Config("nightly.train_days must be at least 1".into()).into());
        }
        Ok(())
    }
}

/// Settings of a nightly run.
#[derive(Debug, Clone)]
pub struct NightlyConfig {
    /// The lake, if any.
    pub lake: Option<PathBuf>,
    /// Reference-table directory (default: `LAKE/reference`).
    pub reference: Option<PathBuf>,
    /// Input files.
    pub inputs: Vec<InputSpec>,
    /// First business day of the risk list.
    pub from: NaiveDate,
    /// Last business day of the risk list.
    pub to: NaiveDate,
    /// Output directory.
    pub out: PathBuf,
    /// Rule thresholds.
    pub thresholds: Thresholds,
    /// Rows of the top-N table printed at the end.
    pub top: usize,
    /// Show a progress bar over the indicator queries.
    pub progress: bool,
    /// Where the anomaly model comes from.
    pub model: ModelSource,
    /// Calibrated percentile from which the model flags an enterprise-day: `1 − α` for a
    /// target false-alarm rate α ([`anomaly::threshold_for_rate`]; default
    /// [`anomaly::DEFAULT_THRESHOLD`], α = [`anomaly::DEFAULT_FALSE_ALARM_RATE`]).
    pub anomaly_threshold: f64,
}

/// Registers an event kind as `kind` = lake files ∪ input rows.
async fn register_kind(
    ctx: &SessionContext,
    kind: EventKind,
    files: &[String],
    input: Vec<RecordBatch>,
) -> Result<()> {
    let name = kind.as_str();
    let schema = kind.lake_schema();
    if input.iter().all(|b| b.num_rows() == 0) {
        return Ok(register_urls(ctx, name, schema, files).await?);
    }
    let lake_name = format!("{name}_lake");
    register_urls(ctx, &lake_name, schema.clone(), files).await?;
    let mem = MemTable::try_new(schema, vec![input]).map_err(|e| CoreError::query(name, e))?;
    let input_name = format!("{name}_input");
    ctx.register_table(input_name.as_str(), Arc::new(mem))
        .map_err(|e| CoreError::query(name, e))?;
    let view = format!(
        "CREATE VIEW {name} AS SELECT * FROM {lake_name} UNION ALL SELECT * FROM {input_name}"
    );
    ctx.sql(&view)
        .await
        .map_err(|e| CoreError::query(name, e))?;
    Ok(())
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = run_sql(ctx, "count", sql).await?;
    let mut n = 0u64;
    for b in &batches {
        let a = datafusion::arrow::compute::cast(b.column(0), &DataType::UInt64)
            .map_err(|e| CoreError::arrow("count", e))?;
        let a = a
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            .ok_or_else(|| CoreError::Internal("count is not an integer".into()))?;
        n += a.iter().flatten().sum::<u64>();
    }
    Ok(n)
}

/// Runs the nightly job.
pub async fn run(cfg: &NightlyConfig) -> Result<NightlyOutput> {
    run_rules(cfg, None).await
}

/// [`run`] with the measures rules whose `[credit]` section sets the credit file's publicity
/// periods and grade steps (`None`: the shipped rules).
pub async fn run_rules(
    cfg: &NightlyConfig,
    rules: Option<&pharmwatch_regulation::Rules>,
) -> Result<NightlyOutput> {
    let started = Instant::now();
    let rules = rules_or_embedded(rules)?;
    let rules = rules.as_ref();
    if cfg.to < cfg.from {
        return Err(
            CoreError::Config(format!("--to {} is before --from {}", cfg.to, cfg.from)).into(),
        );
    }
    let mut phases = Phases::default();
    let ctx = session();
    let source = match &cfg.lake {
        Some(l) => Some(LakeSource::open(l, &ctx)?),
        None => None,
    };
    let reference = reference_urls(cfg, source.as_ref()).await?;
    let (enterprises, products, refs) = register_reference(&ctx, &reference).await?;
    // Input files.
    let ingested = ingest::ingest_all(
        &cfg.inputs,
        &refs,
        ingest::run_range(cfg.from, cfg.to, LOOKBACK_DAYS),
    )?;
    let mut inputs: HashMap<EventKind, Vec<RecordBatch>> = HashMap::new();
    for (kind, batch) in ingested.batches {
        inputs.entry(kind).or_default().push(batch);
    }
    // When the model is trained, the rules run over its training window too: enterprise-days
    // the rules already flag are left out of what the model learns as normal.
    let train_from = training_start(cfg);
    let query_from = query_start(cfg);
    let with_inputs = inputs.values().flatten().any(|b| b.num_rows() > 0);
    let registered = register_events(&ctx, cfg, source.as_ref(), inputs, query_from).await?;
    let (lake_records, enterprises_scored) = count_read(&ctx, cfg).await?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| CoreError::io(&cfg.out, e))?;
    phases.mark("read");

    // The day store: days computed before are read back. Input files are not in the lake, so a
    // run with them computes every day and stores none.
    let mut days = match (&source, with_inputs) {
        (Some(source), false) => {
            let mut store = DayStore::open(&cfg.out);
            let index = LakeDays::index(&mut store, source, &registered, &reference).await?;
            Some((store, index))
        }
        _ => None,
    };
    phases.mark("day index");

    // Indicators, scoring, outputs.
    let bar = pharmwatch_core::progress::bar(
        cfg.progress,
        indicators::QUERIES.len() as u64,
        "indicators",
    );
    let (all_hits, mut query_seconds, hit_days) =
        rule_hits(&ctx, cfg, query_from, days.as_mut(), &bar).await?;
    let (hits, earlier_hits): (Vec<Hit>, Vec<Hit>) =
        all_hits.into_iter().partition(|h| h.date >= cfg.from);
    let flagged_by_rules: HashSet<(String, NaiveDate)> = hits
        .iter()
        .chain(&earlier_hits)
        .map(|h| (h.enterprise_id.clone(), h.date))
        .collect();
    phases.mark("rules");
    let (anomalies, model, feature_days) = run_model(
        &ctx,
        cfg,
        train_from,
        &flagged_by_rules,
        days.as_mut(),
        &mut query_seconds,
    )
    .await?;
    phases.mark("model");
    set_run_dates(&ctx, cfg.from, cfg.to)?;
    let rows = score_rows(cfg, rules, &hits, &anomalies, enterprises, products)?;
    risk::write_list(&cfg.out, &rows)?;
    pharmwatch_core::store::Store::open(&pharmwatch_core::store::location(&cfg.out))?
        .write_risk_list(&rows)?;
    phases.mark("risk list");
    stream_baseline(&ctx, cfg, rules, days.as_mut()).await?;
    phases.mark("stream baseline");
    if let Some((store, _)) = days.as_mut() {
        let listed: BTreeSet<String> = registered.values().flatten().cloned().collect();
        store.commit(query_from - Duration::days(LOOKBACK_DAYS), &listed)?;
    }
    ingest::write_dead_letters(&cfg.out.join("dead_letter.ndjson"), &ingested.dead_letters)?;
    phases.mark("day store and dead letter");

    let per_indicator = per_indicator(&hits, model.is_some().then_some(&anomalies[..]));
    let rows_per_grade: Vec<(String, usize)> = ["D", "C", "B", "A"]
        .iter()
        .map(|g| (g.to_string(), rows.iter().filter(|r| r.grade == *g).count()))
        .collect();
    let input_read = ingested.files.iter().map(|f| f.read).sum();
    let input_accepted = ingested.files.iter().map(|f| f.accepted).sum();
    let input_rejected = ingested.files.iter().map(|f| f.rejected).sum();
    let summary = NightlySummary {
        from: cfg.from,
        to: cfg.to,
        lake_records,
        input_files: ingested.files,
        input_read,
        input_accepted,
        input_rejected,
        enterprises_scored,
        risk_rows: rows.len(),
        hits_per_indicator: per_indicator,
        rows_per_grade,
        query_seconds,
        phase_seconds: phases.done,
        days: DayCounts {
            hits_reused: hit_days.0,
            hits_computed: hit_days.1,
            features_reused: feature_days.0,
            features_computed: feature_days.1,
        },
        model,
        seconds: started.elapsed().as_secs_f64(),
        out: cfg.out.clone(),
    };
    let run_path = cfg.out.join("run.json");
    let text =
        serde_json::to_string_pretty(&summary).map_err(|e| CoreError::Internal(e.to_string()))?;
    std::fs::write(&run_path, text + "\n").map_err(|e| CoreError::io(&run_path, e))?;
    Ok(NightlyOutput {
        summary,
        rows,
        hits,
        anomalies,
        dead_letters: ingested.dead_letters,
    })
}

/// Hits per indicator, and the model's flags when it ran.
fn per_indicator(hits: &[Hit], anomalies: Option<&[AnomalyScore]>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = INDICATORS
        .iter()
        .map(|i| {
            (
                i.to_string(),
                hits.iter().filter(|h| h.indicator == *i).count(),
            )
        })
        .collect();
    if let Some(anomalies) = anomalies {
        counts.push((
            "model_anomaly".to_string(),
            anomalies.iter().filter(|a| a.flagged).count(),
        ));
    }
    counts
}

/// Writes the stream baseline of the run; its trace-code and retail days are the day store's
/// when the run keeps one (each computed once, linked), else computed from the lake.
async fn stream_baseline(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    rules: &pharmwatch_regulation::Rules,
    days: Option<&mut Days>,
) -> Result<()> {
    let t = &cfg.thresholds;
    let (trace, retail) = match days {
        Some(days) => {
            let first = cfg.to - Duration::days(t.trace_lookback());
            let trace = days::trace_days(ctx, days, first, cfg.to, t).await?;
            let first = cfg.to - Duration::days(baseline::RETAIL_DAYS - 1);
            let table = *indicators::FEATURES
                .iter()
                .find(|(name, _)| *name == baseline::RETAIL_DIR)
                .ok_or_else(|| CoreError::Internal("no feature table retail_daily".into()))?;
            let retail = days::table_days(ctx, days, table, first, cfg.to, t).await?;
            (Some(trace), Some(retail))
        }
        None => (None, None),
    };
    let stored = baseline::StoredDays {
        trace: trace.as_deref(),
        retail: retail.as_deref(),
    };
    baseline::export(ctx, &cfg.out, cfg.to, t, stored).await?;
    // The credit-file entries that lower grades, so that the stream scores with the
    // effective credit grade of each event's day, as the risk list does.
    let ledger = pharmwatch_casework::ledger::Ledger::open(&cfg.out)?;
    let steps = pharmwatch_casework::credit::grade_steps(&ledger, rules)?;
    baseline::write_credit(&cfg.out, &steps)?;
    Ok(())
}

/// The reference tables, in the order of [`ReferenceKind::ALL`]: from `--reference DIR`,
/// else from the lake (`LAKE/reference`, a folder or object storage); an error names a missing
/// one.
async fn reference_urls(cfg: &NightlyConfig, lake: Option<&LakeSource>) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    for kind in ReferenceKind::ALL {
        urls.push(match (&cfg.reference, lake) {
            (Some(dir), _) => remote_lake::local_reference(dir, *kind)?,
            (None, Some(l)) => l.reference(*kind).await?,
            (None, None) => {
                return Err(CoreError::Config(
                    "give --lake DIR, or --reference DIR with --input files".into(),
                )
                .into());
            }
        });
    }
    Ok(urls)
}

/// Registers the reference tables (`urls` from [`reference_urls`]); returns the enterprises,
/// the products and the id sets input files are checked against.
async fn register_reference(
    ctx: &SessionContext,
    urls: &[String],
) -> Result<(Vec<Enterprise>, Vec<Product>, ReferenceSets)> {
    for (kind, url) in ReferenceKind::ALL.iter().zip(urls) {
        register_urls(ctx, kind.as_str(), kind.schema(), std::slice::from_ref(url)).await?;
    }
    let enterprises: Vec<Enterprise> = table_rows(ctx, "enterprises").await?;
    let products: Vec<Product> = table_rows(ctx, "products").await?;
    let refs = ReferenceSets {
        enterprises: enterprises
            .iter()
            .map(|e| e.enterprise_id.clone())
            .collect(),
        products: products.iter().map(|p| p.product_id.clone()).collect(),
    };
    Ok((enterprises, products, refs))
}

/// Registers each event kind over the lake partitions of `[query_from − lookback, to]`
/// (product tests over all of them) plus the accepted input rows; returns the files of each.
async fn register_events(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    lake: Option<&LakeSource>,
    mut inputs: HashMap<EventKind, Vec<RecordBatch>>,
    query_from: NaiveDate,
) -> Result<BTreeMap<EventKind, Vec<String>>> {
    let registered = match lake {
        Some(l) => lake_files(l, query_from, cfg.to).await?,
        None => EventKind::ALL.iter().map(|k| (*k, Vec::new())).collect(),
    };
    for (kind, files) in &registered {
        register_kind(ctx, *kind, files, inputs.remove(kind).unwrap_or_default()).await?;
    }
    Ok(registered)
}

/// The lake's files of each event kind a run judging from `query_from` to `to` reads: the
/// partitions of `[query_from − lookback, to]` (product tests: every one up to `to`).
async fn lake_files(
    lake: &LakeSource,
    query_from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<EventKind, Vec<String>>> {
    let lookback_from = query_from - Duration::days(LOOKBACK_DAYS);
    let mut files = BTreeMap::new();
    for kind in EventKind::ALL {
        let since = if *kind == EventKind::ProductTest {
            NaiveDate::MIN
        } else {
            lookback_from
        };
        files.insert(*kind, lake.files(*kind, since, to).await?);
    }
    Ok(files)
}

/// What [`compact_closed_days`] did.
#[derive(Debug, Clone, Default)]
pub struct NightCompaction {
    /// The passes over the partitions.
    pub report: compact::CompactionReport,
    /// Stored days whose key was carried over to the compacted files.
    pub days_rekeyed: usize,
}

/// Compacts the lake partitions a night of `cfg` read (`[query_from − lookback, to]`, every
/// kind; the days up to `to` are closed when the night runs) with the pass of `pharmwatch
/// compact`, then carries the day store over: a compacted partition holds exactly the rows it
/// held, so every day stored under its key of the files before is stored under its key of the
/// files after, and the next night reads it back rather than computing it again. Runs under
/// the nightly lock; a lake given by input files only has nothing to compact.
pub async fn compact_closed_days(
    cfg: &NightlyConfig,
    opts: &compact::CompactOptions,
) -> Result<NightCompaction> {
    let Some(lake) = &cfg.lake else {
        return Ok(NightCompaction::default());
    };
    let _lock =
        pharmwatch_core::store::NightlyLock::take(&pharmwatch_core::store::location(&cfg.out))?;
    let ctx = session();
    let source = LakeSource::open(lake, &ctx)?;
    let reference = reference_urls(cfg, Some(&source)).await?;
    let query_from = query_start(cfg);
    let mut store = DayStore::open(&cfg.out);
    let before_files = lake_files(&source, query_from, cfg.to).await?;
    let before = LakeDays::index(&mut store, &source, &before_files, &reference).await?;
    let first = query_from - Duration::days(LOOKBACK_DAYS);
    let report = compact::compact_days(&source, EventKind::ALL, first, cfg.to, opts).await?;
    let mut out = NightCompaction {
        report,
        days_rekeyed: 0,
    };
    if opts.dry_run || out.report.merged() == 0 {
        return Ok(out);
    }
    let after_files = lake_files(&source, query_from, cfg.to).await?;
    let after = LakeDays::index(&mut store, &source, &after_files, &reference).await?;
    out.days_rekeyed = store.rekey(&before, &after, &cfg.thresholds);
    let listed: BTreeSet<String> = after_files.values().flatten().cloned().collect();
    store.commit(first, &listed)?;
    Ok(out)
}

/// What was read for `[from, to]`: records per kind and the enterprises scored; an error when
/// the lake holds nothing for the range and no input file was given.
async fn count_read(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
) -> Result<(Vec<(String, u64)>, u64)> {
    let range = format!(
        "biz_date BETWEEN DATE '{}' AND DATE '{}'",
        cfg.from.format("%Y-%m-%d"),
        cfg.to.format("%Y-%m-%d")
    );
    // One query per kind and one for the enterprises, independent of one another: they run
    // concurrently, and the results keep the order of the queries.
    let mut queries: Vec<String> = EventKind::ALL
        .iter()
        .map(|kind| format!("SELECT COUNT(*) FROM {} WHERE {range}", kind.as_str()))
        .collect();
    queries.push(format!(
        "SELECT COUNT(DISTINCT enterprise_id) FROM (SELECT enterprise_id FROM inventory WHERE {range} \
         UNION ALL SELECT enterprise_id FROM sales WHERE {range} UNION ALL SELECT enterprise_id FROM purchase WHERE {range})"
    ));
    let mut counts =
        futures::future::try_join_all(queries.iter().map(|sql| count(ctx, sql))).await?;
    let enterprises_scored = counts.pop().unwrap_or(0);
    let lake_records: Vec<(String, u64)> = EventKind::ALL
        .iter()
        .map(|kind| kind.as_str().to_string())
        .zip(counts)
        .collect();
    if cfg.lake.is_some() && lake_records.iter().all(|(_, n)| *n == 0) && cfg.inputs.is_empty() {
        return Err(CoreError::Lake {
            path: cfg.lake.clone().unwrap_or_default(),
            reason: format!(
                "no records for {} … {} (check --date / --from / --to)",
                cfg.from, cfg.to
            ),
        }
        .into());
    }
    Ok((lake_records, enterprises_scored))
}

/// Scores the hits and the model's flags into the risk list. The credit factor uses the
/// effective credit grade: the reference grade lowered by the credit-file entries of the case
/// ledger still public on the row's day.
fn score_rows(
    cfg: &NightlyConfig,
    rules: &pharmwatch_regulation::Rules,
    hits: &[Hit],
    anomalies: &[AnomalyScore],
    enterprises: Vec<Enterprise>,
    products: Vec<Product>,
) -> Result<Vec<RiskRow>> {
    let ent_map: HashMap<String, Enterprise> = enterprises
        .into_iter()
        .map(|e| (e.enterprise_id.clone(), e))
        .collect();
    let prod_map: HashMap<String, Product> = products
        .into_iter()
        .map(|p| (p.product_id.clone(), p))
        .collect();
    let ledger = pharmwatch_casework::ledger::Ledger::open(&cfg.out)?;
    let book = pharmwatch_casework::credit::CreditBook::load(
        &ledger,
        hits.iter().map(|h| h.enterprise_id.as_str()).chain(
            anomalies
                .iter()
                .filter(|a| a.flagged)
                .map(|a| a.enterprise_id.as_str()),
        ),
        rules,
    )?;
    drop(ledger);
    Ok(risk::build_with_credit(
        hits,
        anomalies,
        &ent_map,
        &prod_map,
        &|e, d, g| book.effective(e, d, g),
    ))
}

/// A nightly run followed by its closed loop ([`pharmwatch_casework::closedloop`]): the ledger sweep on the
/// run date, then caution notices and cases for the selected risk-list rows. `None` runs the
/// risk list only.
pub async fn run_with(
    cfg: &NightlyConfig,
    closed_loop: Option<&pharmwatch_casework::closedloop::ClosedLoop>,
) -> Result<(
    NightlyOutput,
    Option<pharmwatch_casework::closedloop::ClosedLoopSummary>,
)> {
    let (out, loop_summary, _) = run_reported(cfg, closed_loop).await?;
    Ok((out, loop_summary))
}

/// [`run_with`], also returning the store's view of the run that `report.html` was written
/// from (and the metrics are taken from).
async fn run_reported(
    cfg: &NightlyConfig,
    closed_loop: Option<&pharmwatch_casework::closedloop::ClosedLoop>,
) -> Result<(
    NightlyOutput,
    Option<pharmwatch_casework::closedloop::ClosedLoopSummary>,
    crate::report::Snapshot,
)> {
    // One run of the night at a time on a store, however many schedulers start it.
    let _lock =
        pharmwatch_core::store::NightlyLock::take(&pharmwatch_core::store::location(&cfg.out))?;
    let out = run_rules(cfg, closed_loop.map(|c| &c.rules)).await?;
    let loop_summary = match closed_loop {
        Some(cl) => Some(pharmwatch_casework::closedloop::run(
            &cfg.out, &out.rows, cfg.to, cl,
        )?),
        None => None,
    };
    let snap = snapshot(cfg, loop_summary.as_ref(), closed_loop.map(|c| &c.rules))?;
    crate::report::write_html(&cfg.out, &snap)?;
    Ok((out, loop_summary, snap))
}

/// The measures rules given, or the shipped ones.
fn rules_or_embedded(
    rules: Option<&pharmwatch_regulation::Rules>,
) -> Result<std::borrow::Cow<'_, pharmwatch_regulation::Rules>> {
    Ok(match rules {
        Some(r) => std::borrow::Cow::Borrowed(r),
        None => std::borrow::Cow::Owned(
            pharmwatch_regulation::Rules::embedded()
                .map_err(|e| CoreError::regulation("rules", e))?,
        ),
    })
}

/// The store's view of a finished run: the day's list, trend, notices and cases.
fn snapshot(
    cfg: &NightlyConfig,
    loop_summary: Option<&pharmwatch_casework::closedloop::ClosedLoopSummary>,
    rules: Option<&pharmwatch_regulation::Rules>,
) -> Result<crate::report::Snapshot> {
    let run_date = loop_summary.and_then(|s| s.run_date).unwrap_or(cfg.to);
    let store = pharmwatch_core::store::Store::open(&pharmwatch_core::store::location(&cfg.out))?;
    let mut snap = crate::report::Snapshot::load(&store, cfg.to, run_date)?;
    drop(store);
    // The referred cases' penalty stages overdue on the run date (the alerts' figure).
    let rules = rules_or_embedded(rules)?;
    let cal = pharmwatch_casework::measures::calendar_for(None, Some(&cfg.out))?;
    let ledger = pharmwatch_casework::ledger::Ledger::open(&cfg.out)?;
    snap.penalty_overdue =
        pharmwatch_casework::penalty::overdue(&ledger, run_date, rules.as_ref(), &cal)?;
    Ok(snap)
}

/// [`run_with`], recording the run in `metrics_textfile` (node_exporter's textfile collector
/// format) when given: a successful run writes every nightly metric; a failed one marks the
/// run failed and keeps the last good run's numbers ([`NightlyMetrics::write_failure`]).
///
/// [`NightlyMetrics::write_failure`]: crate::metrics::NightlyMetrics::write_failure
pub async fn run_recorded(
    cfg: &NightlyConfig,
    closed_loop: Option<&pharmwatch_casework::closedloop::ClosedLoop>,
    metrics_textfile: Option<&Path>,
) -> Result<(
    NightlyOutput,
    Option<pharmwatch_casework::closedloop::ClosedLoopSummary>,
)> {
    let started = Instant::now();
    let result = run_reported(cfg, closed_loop).await;
    let Some(path) = metrics_textfile else {
        return result.map(|(out, loop_summary, _)| (out, loop_summary));
    };
    match result {
        Ok((out, loop_summary, snap)) => {
            crate::metrics::run_metrics(&out, &snap)
                .write_success(path, started.elapsed().as_secs_f64())?;
            Ok((out, loop_summary))
        }
        Err(e) => {
            if let Err(w) =
                crate::metrics::NightlyMetrics::write_failure(path, started.elapsed().as_secs_f64())
            {
                eprintln!("nightly: the failed run could not be recorded: {w}");
            }
            Err(e)
        }
    }
}

/// First day of the model's training window, when the model is trained: `train_days` ending
/// with `to`, widened to cover `[from, to]`, and never so early that the rules' 31-day
/// lookback would leave the lake range the run registered.
pub fn training_start(cfg: &NightlyConfig) -> Option<NaiveDate> {
    let ModelSource::Train { train_days, .. } = &cfg.model else {
        return None;
    };
    Some(window_start(cfg, *train_days))
}

/// First day the rules judge in a run: `from`, or the first day of the model's training window
/// when it is trained (the rules' hits leave enterprise-days out of what it learns).
fn query_start(cfg: &NightlyConfig) -> NaiveDate {
    training_start(cfg).map_or(cfg.from, |t| t.min(cfg.from))
}

/// First day of a window of `days` ending with `to`, widened to cover `[from, to]` and kept
/// inside the lake range the run registered (the rules' 31-day lookback).
fn window_start(cfg: &NightlyConfig, days: i64) -> NaiveDate {
    let earliest = cfg.from - Duration::days(LOOKBACK_DAYS - 31);
    cfg.from
        .min(cfg.to - Duration::days(days.max(1) - 1))
        .max(earliest)
}

/// Per segment, the score threshold of `rate` and the share of its training rows above it.
fn calibration_of(set: &pharmwatch_models::ModelSet, rate: f64) -> Vec<SegmentCalibration> {
    set.segments
        .iter()
        .map(|(k, m)| {
            let threshold = m.threshold(rate);
            // Share of training rows above the threshold, from the recorded exceedances
            // when the rate is one of them, else from the training quantiles.
            let training_share = m
                .tail
                .training_exceedance
                .iter()
                .find(|(a, _)| (a - rate).abs() < 1e-12)
                .map(|(_, s)| *s)
                .unwrap_or_else(|| 1.0 - m.score_distribution.percentile(threshold));
            SegmentCalibration {
                segment: k.clone(),
                score_threshold: threshold,
                training_share_above: training_share,
            }
        })
        .collect()
}

/// Wall time of a run's phases, each from the end of the one before.
#[derive(Debug)]
struct Phases {
    last: Instant,
    done: Vec<(String, f64)>,
}

impl Default for Phases {
    fn default() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    /// Ends phase `name` now.
    fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.done
            .push((name.to_string(), (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// The store and the lake's day index of a run that keeps its days.
type Days = (DayStore, LakeDays);

/// Sets table `run_dates` to the days `from ..= to` (see [`indicators::register_run_dates`]).
fn set_run_dates(ctx: &SessionContext, from: NaiveDate, to: NaiveDate) -> Result<()> {
    ctx.deregister_table("run_dates")
        .map_err(|e| CoreError::query("run_dates", e))?;
    Ok(indicators::register_run_dates(ctx, from, to)?)
}

/// The days `from ..= to`, each with its key in the day store (empty keys without one).
fn keyed_days(
    from: NaiveDate,
    to: NaiveDate,
    days: Option<&Days>,
    part: Part,
    t: &Thresholds,
) -> Vec<(NaiveDate, String)> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .map(|d| {
            let key = days.map_or_else(String::new, |(_, index)| index.key(part, d, t));
            (d, key)
        })
        .collect()
}

/// The rule hits of `[from, to]`: each day read back from the day store when stored under its
/// key, the others computed (one query run per range of consecutive days) and stored. Returns
/// the hits sorted, each query's wall time summed over the ranges, and the days (read back,
/// computed).
async fn rule_hits(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    from: NaiveDate,
    mut days: Option<&mut Days>,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<Hit>, Vec<(String, f64)>, (usize, usize))> {
    let keyed = keyed_days(from, cfg.to, days.as_deref(), Part::Hits, &cfg.thresholds);
    let ranges = match days.as_deref() {
        // In chunks, so memory is bounded by a chunk's days, not by a first night's range.
        Some((store, _)) => days::missing_ranges(store, Part::Hits, keyed.iter().cloned())
            .into_iter()
            .flat_map(|r| chunks(r, CHUNK_DAYS))
            .collect(),
        None => vec![(from, cfg.to)],
    };
    let computed: usize = ranges
        .iter()
        .map(|(a, b)| (*b - *a).num_days() as usize + 1)
        .sum();
    let mut hits = Vec::new();
    let mut timings: Vec<(String, f64)> = Vec::new();
    for (a, b) in &ranges {
        set_run_dates(ctx, *a, *b)?;
        // With a day store, the trace-duplicate rule reads the judged days' coded sales and
        // the first sales of their codes on the days before (each such day computed once),
        // not every sale of its look-back. It runs first, and what it gathered is dropped
        // before the feature tables are built: the night's peak memory is the larger of the
        // two, not their sum.
        let mut took = Vec::new();
        let mut found = Vec::new();
        if let Some(days) = days.as_deref_mut() {
            let started = Instant::now();
            let trace = days::trace_sales(ctx, days, *a, *b, &cfg.thresholds).await?;
            took.push((TRACE_TIMING.to_string(), started.elapsed().as_secs_f64()));
            let started = Instant::now();
            let sql = indicators::query_sql(TRACE_QUERY)
                .ok_or_else(|| CoreError::Internal(format!("no query {TRACE_QUERY}")))?;
            found =
                indicators::run_query(&trace, TRACE_QUERY, sql, *a, *b, &cfg.thresholds).await?;
            took.push((TRACE_QUERY.to_string(), started.elapsed().as_secs_f64()));
            bar.inc(1);
        }
        took.extend(feature_tables(ctx, cfg, *a, *b, days.as_deref_mut()).await?);
        let skip: &[&str] = if days.is_some() { &[TRACE_QUERY] } else { &[] };
        let (others, queried) =
            indicators::run_queries_except(ctx, skip, *a, *b, &cfg.thresholds, bar).await?;
        found.extend(others);
        indicators::sort_hits(&mut found);
        took.extend(queried);
        for (name, secs) in took {
            add_time(&mut timings, &name, secs);
        }
        if let Some((store, _)) = days.as_deref_mut() {
            for (d, key) in keyed.iter().filter(|(d, _)| d >= a && d <= b) {
                let of_day: Vec<Hit> = found.iter().filter(|h| h.date == *d).cloned().collect();
                store.write_hits(*d, key.clone(), &of_day)?;
            }
        }
        hits.extend(found);
    }
    let in_ranges = |d: &NaiveDate| ranges.iter().any(|(a, b)| d >= a && d <= b);
    if let Some((store, _)) = days.as_deref() {
        for (d, _) in keyed.iter().filter(|(d, _)| !in_ranges(d)) {
            hits.extend(store.read_hits(*d)?);
        }
        // The feature tables are the rules' alone when the days are stored (the stream
        // baseline links its days from the store): their memory is returned before the model
        // builds its own.
        for (name, _) in indicators::FEATURES {
            ctx.deregister_table(*name)
                .map_err(|e| CoreError::query(name, e))?;
        }
    }
    indicators::sort_hits(&mut hits);
    Ok((hits, timings, (keyed.len() - computed, computed)))
}

/// The indicator query that reads the trace-code days when the run keeps a day store.
const TRACE_QUERY: &str = "trace_duplicate.sql";
/// Its input's name among the query timings: the judged days' coded sales and the earlier
/// days' first sales of their codes.
const TRACE_TIMING: &str = "trace_sales";

/// Adds `secs` to the time of `name` in `timings` (appended when new).
fn add_time(timings: &mut Vec<(String, f64)>, name: &str, secs: f64) {
    match timings.iter_mut().find(|(n, _)| n == name) {
        Some((_, t)) => *t += secs,
        None => timings.push((name.to_string(), secs)),
    }
}

/// Registers the rules' feature tables ([`indicators::FEATURES`]) for judging `[from, to]`:
/// from the day store when the run keeps days (each day's rows computed once), else built by
/// their SQL. Returns each table's wall time.
async fn feature_tables(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    from: NaiveDate,
    to: NaiveDate,
    days: Option<&mut Days>,
) -> Result<Vec<(String, f64)>> {
    let Some(days) = days else {
        for (name, _) in indicators::FEATURES {
            ctx.deregister_table(*name)
                .map_err(|e| CoreError::query(name, e))?;
        }
        return Ok(indicators::build_features(ctx, from, to, &cfg.thresholds).await?);
    };
    let tables: Vec<_> = indicators::FEATURES
        .iter()
        .map(|table| {
            let lookback = indicators::feature_lookback(table.0);
            (*table, from - Duration::days(lookback))
        })
        .collect();
    let seconds = days::register_day_tables(ctx, days, &tables, to, &cfg.thresholds).await?;
    Ok(tables
        .iter()
        .zip(seconds)
        .map(|((table, _), secs)| (format!("{}.sql", table.0), secs))
        .collect())
}

/// The model's feature table of `[from, to]`: each day read back from the day store when
/// stored under its key, the others computed (one query per range of consecutive days) and
/// stored; rows in the feature query's order. Returns the table and the days (read back,
/// computed).
async fn model_features(
    ctx: &SessionContext,
    (from, to): (NaiveDate, NaiveDate),
    thresholds: &Thresholds,
    days: Option<&mut Days>,
    timings: &mut Vec<(String, f64)>,
) -> Result<(anomaly::FeatureTable, (usize, usize))> {
    let Some(days) = days else {
        anomaly::build_day_tables(ctx, from, to).await?;
        let started = Instant::now();
        let table = anomaly::features(ctx, from, to).await?;
        add_time(timings, FEATURE_TIMING, started.elapsed().as_secs_f64());
        return Ok((table, (0, 0)));
    };
    let keyed = keyed_days(from, to, Some(&*days), Part::Features, thresholds);
    let ranges = days::missing_ranges(&days.0, Part::Features, keyed.iter().cloned());
    let mut parts = Vec::new();
    let mut computed = 0;
    for (a, b) in ranges.iter().flat_map(|r| chunks(*r, CHUNK_DAYS)) {
        // The day tables of the chunk's window, each day computed once and kept; a stage's
        // tables together, after the stages they read.
        let first = a - Duration::days(days::FEATURE_LOOKBACK_DAYS);
        for stage in anomaly::DAY_TABLE_STAGES {
            let tables: Vec<_> = stage.iter().map(|t| (*t, first)).collect();
            let seconds = days::register_day_tables(ctx, days, &tables, b, thresholds).await?;
            for ((table, _), secs) in tables.iter().zip(seconds) {
                add_time(timings, &format!("{}.sql", table.0), secs);
            }
        }
        let started = Instant::now();
        let table = anomaly::features(ctx, a, b).await?;
        add_time(timings, FEATURE_TIMING, started.elapsed().as_secs_f64());
        for (d, key) in keyed.iter().filter(|(d, _)| *d >= a && *d <= b) {
            days.0.write_features(*d, key.clone(), &table)?;
            computed += 1;
        }
        parts.push(table);
    }
    for table in anomaly::DAY_TABLES {
        ctx.deregister_table(table.0)
            .map_err(|e| CoreError::query(table.0, e))?;
    }
    let in_ranges = |d: &NaiveDate| ranges.iter().any(|(a, b)| d >= a && d <= b);
    let stored: Vec<NaiveDate> = keyed
        .iter()
        .map(|(d, _)| *d)
        .filter(|d| !in_ranges(d))
        .collect();
    let store = &days.0;
    parts.extend(
        days::on_lanes(&stored, |d| Ok(vec![store.read_features(*d)?]))?
            .into_iter()
            .flatten(),
    );
    Ok((
        days::join_features(parts),
        (keyed.len() - computed, computed),
    ))
}

/// The feature query's name among the timings.
const FEATURE_TIMING: &str = "enterprise_daily.sql";

/// Days the rules or the features judge in one run of their queries when the run keeps a day
/// store: what they read covers the chunk and its look-back, so memory is bounded by the
/// chunk, not by the range (a first night's 28 days, a backfill's weeks).
const CHUNK_DAYS: i64 = 7;

/// The range `(first, last)` cut into consecutive chunks of at most `days` days.
fn chunks((first, last): (NaiveDate, NaiveDate), days: i64) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut a = first;
    while a <= last {
        let b = (a + Duration::days(days - 1)).min(last);
        out.push((a, b));
        a = b + Duration::days(1);
    }
    out
}

/// Features, model (trained or loaded) and verdicts for `[from, to]`; writes `model.json` and
/// `features.csv` into the output directory. Training leaves out the enterprise-days in
/// `flagged_by_rules`.
async fn run_model(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    train_from: Option<NaiveDate>,
    flagged_by_rules: &HashSet<(String, NaiveDate)>,
    days: Option<&mut Days>,
    timings: &mut Vec<(String, f64)>,
) -> Result<(Vec<AnomalyScore>, Option<ModelSummary>, (usize, usize))> {
    let started = Instant::now();
    let artifact = cfg.out.join("model.json");
    let mut feature_days = (0, 0);
    let (set, table, source, train_window, notes, artifact) = match &cfg.model {
        ModelSource::Off => return Ok((Vec::new(), None, feature_days)),
        ModelSource::Train { families, seed, .. } => {
            let train_from = train_from.unwrap_or(cfg.from);
            let (table, counted) =
                model_features(ctx, (train_from, cfg.to), &cfg.thresholds, days, timings).await?;
            feature_days = counted;
            let fitting = Instant::now();
            let trained_at = chrono::Utc::now().to_rfc3339();
            let (set, notes) = anomaly::train(
                &table,
                flagged_by_rules,
                families,
                *seed,
                &trained_at,
                (train_from, cfg.to),
            )?;
            add_time(timings, "model fit", fitting.elapsed().as_secs_f64());
            pharmwatch_core::anomaly::write_artifact(&artifact, &set)?;
            (
                set,
                table,
                "trained",
                Some((train_from, cfg.to)),
                notes,
                artifact,
            )
        }
        ModelSource::Load(path) => {
            let set = pharmwatch_core::anomaly::read_artifact(path)?;
            anomaly::check_features(&set, path)?;
            // The same window a trained run reads, so an enterprise's first day (and with it
            // which rows have a history to be judged against) is the same either way.
            let history_from = window_start(cfg, anomaly::DEFAULT_TRAIN_DAYS);
            let (table, counted) =
                model_features(ctx, (history_from, cfg.to), &cfg.thresholds, days, timings).await?;
            feature_days = counted;
            (set, table, "loaded", None, Vec::new(), path.clone())
        }
    };
    table.write_csv(&cfg.out.join("features.csv"))?;
    let anomalies = anomaly::score(&set, &table, cfg.from, cfg.to, cfg.anomaly_threshold);
    let summary = ModelSummary {
        source: source.to_string(),
        artifact,
        feature_rows: table.len(),
        train_window,
        segments: set
            .segments
            .iter()
            .map(|(k, m)| {
                (
                    k.clone(),
                    m.training_rows,
                    m.detector_names().iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect(),
        notes,
        scored: anomalies.len(),
        flagged: anomalies.iter().filter(|a| a.flagged).count(),
        threshold: cfg.anomaly_threshold,
        false_alarm_rate: 1.0 - cfg.anomaly_threshold,
        calibration: calibration_of(&set, 1.0 - cfg.anomaly_threshold),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((anomalies, Some(summary), feature_days))
}
