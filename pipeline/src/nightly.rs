//! The nightly job: lake (and input files) in, windowed indicators, the day's risk list out.
//!
//! Steps: load the reference tables; read and validate input files (bad rows to the dead
//! letter); register each event kind as one table over the lake partitions of
//! `[from − 60 days, to]` plus the accepted input rows; run the indicator SQL; compute the
//! model features, fit (or load) the anomaly model and score `[from, to]`; score and rank;
//! write `risk_list.{parquet,csv,json}`, `model.json` (the artifact), `features.csv`,
//! `dead_letter.ndjson` and `run.json` into the output directory. [`run_with`] adds the closed
//! loop: the case-ledger sweep and the caution notices under `notices/`.
//!
//! Invariants: for input files `read = accepted + rejected`; hits belong to business days in
//! `[from, to]` only; the output files are written whole (a failed run leaves the previous
//! outputs untouched until it succeeds).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use datafusion::arrow::array::{Date32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;

use pharmwatch_schemas::{Enterprise, EventKind, Product, ReferenceKind};

use crate::anomaly::{self, AnomalyScore, ModelSource};
use crate::error::{PipelineError, Result};
use crate::indicators::{self, Hit, INDICATORS, LOOKBACK_DAYS, Thresholds};
use crate::ingest::{self, DeadLetter, FileCounts, InputSpec, ReferenceSets};
use crate::lake;
use crate::risk::{self, RiskRow};

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
    /// Percentile from which the model flags an enterprise-day.
    pub anomaly_threshold: f64,
}

/// What the anomaly model did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// `trained` or `loaded`.
    pub source: String,
    /// The artifact written (trained) or read (loaded).
    pub artifact: PathBuf,
    /// Feature rows computed (training window when trained).
    pub feature_rows: usize,
    /// Training window, when trained.
    pub train_window: Option<(NaiveDate, NaiveDate)>,
    /// Per segment: training rows and detectors.
    pub segments: Vec<(String, usize, Vec<String>)>,
    /// Notes (segments not modelled, detectors skipped).
    pub notes: Vec<String>,
    /// Enterprise-days of `[from, to]` scored.
    pub scored: usize,
    /// Of those, flagged.
    pub flagged: usize,
    /// The threshold.
    pub threshold: f64,
    /// Wall time of features, fitting and scoring, seconds.
    pub seconds: f64,
}

/// What a nightly run did.
#[derive(Debug, Clone, Serialize)]
pub struct NightlySummary {
    /// First business day.
    pub from: NaiveDate,
    /// Last business day.
    pub to: NaiveDate,
    /// Event records in the lake for `[from, to]`, per kind.
    pub lake_records: Vec<(String, u64)>,
    /// Input files: read, accepted, rejected.
    pub input_files: Vec<FileCounts>,
    /// Input rows read in all.
    pub input_read: u64,
    /// Input rows accepted.
    pub input_accepted: u64,
    /// Input rows rejected (dead letter).
    pub input_rejected: u64,
    /// Enterprises with records in `[from, to]` (scored).
    pub enterprises_scored: u64,
    /// Risk-list rows (enterprise × day).
    pub risk_rows: usize,
    /// Hits per indicator.
    pub hits_per_indicator: Vec<(String, usize)>,
    /// Rows per grade.
    pub rows_per_grade: Vec<(String, usize)>,
    /// Wall time of each indicator query, seconds.
    pub query_seconds: Vec<(String, f64)>,
    /// The anomaly model's part (None when switched off).
    pub model: Option<ModelSummary>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Where the outputs are.
    pub out: PathBuf,
}

/// Everything a run produced (for tests and the demo).
#[derive(Debug)]
pub struct NightlyOutput {
    /// The summary.
    pub summary: NightlySummary,
    /// The risk list.
    pub rows: Vec<RiskRow>,
    /// All hits.
    pub hits: Vec<Hit>,
    /// The model's verdicts on `[from, to]`.
    pub anomalies: Vec<AnomalyScore>,
    /// Rejected input rows.
    pub dead_letters: Vec<DeadLetter>,
}

/// A DataFusion context configured for the nightly queries.
pub fn session() -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .with_information_schema(false);
    // Evaluate filters (including the dynamic filters of hash joins) while decoding Parquet, so
    // the columns of rows that cannot match are never materialised.
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    SessionContext::new_with_config(config)
}

pub(crate) async fn register_files(
    ctx: &SessionContext,
    name: &str,
    schema: Arc<Schema>,
    files: &[PathBuf],
) -> Result<()> {
    if files.is_empty() {
        let empty = MemTable::try_new(schema.clone(), vec![vec![RecordBatch::new_empty(schema)]])
            .map_err(|e| PipelineError::query(name, e))?;
        ctx.register_table(name, Arc::new(empty))
            .map_err(|e| PipelineError::query(name, e))?;
        return Ok(());
    }
    let mut urls = Vec::with_capacity(files.len());
    for f in files {
        let abs = std::fs::canonicalize(f).map_err(|e| PipelineError::io(f, e))?;
        urls.push(
            ListingTableUrl::parse(abs.to_string_lossy())
                .map_err(|e| PipelineError::query(name, e))?,
        );
    }
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| PipelineError::query(name, e))?;
    ctx.register_table(name, Arc::new(table))
        .map_err(|e| PipelineError::query(name, e))?;
    Ok(())
}

/// Registers an event kind as `kind` = lake files ∪ input rows.
async fn register_kind(
    ctx: &SessionContext,
    kind: EventKind,
    files: &[PathBuf],
    input: Vec<RecordBatch>,
) -> Result<()> {
    let name = kind.as_str();
    let schema = kind.lake_schema();
    if input.iter().all(|b| b.num_rows() == 0) {
        return register_files(ctx, name, schema, files).await;
    }
    let lake_name = format!("{name}_lake");
    register_files(ctx, &lake_name, schema.clone(), files).await?;
    let mem = MemTable::try_new(schema, vec![input]).map_err(|e| PipelineError::query(name, e))?;
    let input_name = format!("{name}_input");
    ctx.register_table(input_name.as_str(), Arc::new(mem))
        .map_err(|e| PipelineError::query(name, e))?;
    let view = format!(
        "CREATE VIEW {name} AS SELECT * FROM {lake_name} UNION ALL SELECT * FROM {input_name}"
    );
    ctx.sql(&view)
        .await
        .map_err(|e| PipelineError::query(name, e))?;
    Ok(())
}

pub(crate) async fn collect(
    ctx: &SessionContext,
    what: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let df = ctx
        .sql(sql)
        .await
        .map_err(|e| PipelineError::query(what, e))?;
    df.collect()
        .await
        .map_err(|e| PipelineError::query(what, e))
}

/// Reads a table's rows into serde structs through Arrow's JSON writer.
pub(crate) async fn table_rows<T: serde::de::DeserializeOwned>(
    ctx: &SessionContext,
    table: &str,
) -> Result<Vec<T>> {
    let batches = collect(ctx, table, &format!("SELECT * FROM {table}")).await?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b).map_err(|e| PipelineError::arrow(table, e))?;
        }
        w.finish().map_err(|e| PipelineError::arrow(table, e))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| PipelineError::Internal(format!("{table}: {e}")))
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let batches = collect(ctx, "count", sql).await?;
    let mut n = 0u64;
    for b in &batches {
        let a = datafusion::arrow::compute::cast(b.column(0), &DataType::UInt64)
            .map_err(|e| PipelineError::arrow("count", e))?;
        let a = a
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
            .ok_or_else(|| PipelineError::Internal("count is not an integer".into()))?;
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
    if cfg.to < cfg.from {
        return Err(PipelineError::Config(format!(
            "--to {} is before --from {}",
            cfg.to, cfg.from
        )));
    }
    let reference_dir = match (&cfg.reference, &cfg.lake) {
        (Some(r), _) => r.clone(),
        (None, Some(l)) => l.join(lake::REFERENCE_DIR),
        (None, None) => {
            return Err(PipelineError::Config(
                "give --lake DIR, or --reference DIR with --input files".into(),
            ));
        }
    };
    let ctx = session();

    // Reference tables.
    for kind in ReferenceKind::ALL {
        let path = reference_dir.join(format!("{}.parquet", kind.as_str()));
        if !path.exists() {
            return Err(PipelineError::Lake {
                path: reference_dir.clone(),
                reason: format!(
                    "reference table {} is missing (the simulator writes it; see README)",
                    path.display()
                ),
            });
        }
        register_files(&ctx, kind.as_str(), kind.schema(), &[path]).await?;
    }
    let enterprises: Vec<Enterprise> = table_rows(&ctx, "enterprises").await?;
    let products: Vec<Product> = table_rows(&ctx, "products").await?;
    let refs = ReferenceSets {
        enterprises: enterprises
            .iter()
            .map(|e| e.enterprise_id.clone())
            .collect(),
        products: products.iter().map(|p| p.product_id.clone()).collect(),
    };

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

    // Event tables.
    let lookback_from = cfg.from - Duration::days(LOOKBACK_DAYS);
    for kind in EventKind::ALL {
        let files: Vec<PathBuf> = match &cfg.lake {
            Some(l) => {
                let since = if *kind == EventKind::ProductTest {
                    NaiveDate::MIN
                } else {
                    lookback_from
                };
                let mut files = Vec::new();
                for (_, dir) in lake::partitions(l, *kind, since, cfg.to)? {
                    files.extend(lake::day_files(&dir)?);
                }
                files
            }
            None => Vec::new(),
        };
        register_kind(&ctx, *kind, &files, inputs.remove(kind).unwrap_or_default()).await?;
    }
    let run_dates: Vec<i32> = {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let mut v = Vec::new();
        let mut d = cfg.from;
        while d <= cfg.to {
            v.push((d - epoch).num_days() as i32);
            d += Duration::days(1);
        }
        v
    };
    let rd_schema = Arc::new(Schema::new(vec![Field::new(
        "run_date",
        DataType::Date32,
        false,
    )]));
    let rd_batch = RecordBatch::try_new(
        rd_schema.clone(),
        vec![Arc::new(Date32Array::from(run_dates))],
    )
    .map_err(|e| PipelineError::arrow("run_dates", e))?;
    let rd = MemTable::try_new(rd_schema, vec![vec![rd_batch]])
        .map_err(|e| PipelineError::query("run_dates", e))?;
    ctx.register_table("run_dates", Arc::new(rd))
        .map_err(|e| PipelineError::query("run_dates", e))?;

    // What was read.
    let range = format!(
        "biz_date BETWEEN DATE '{}' AND DATE '{}'",
        cfg.from.format("%Y-%m-%d"),
        cfg.to.format("%Y-%m-%d")
    );
    let mut lake_records = Vec::new();
    for kind in EventKind::ALL {
        let n = count(
            &ctx,
            &format!("SELECT COUNT(*) FROM {} WHERE {range}", kind.as_str()),
        )
        .await?;
        lake_records.push((kind.as_str().to_string(), n));
    }
    let enterprises_scored = count(
        &ctx,
        &format!(
            "SELECT COUNT(DISTINCT enterprise_id) FROM (SELECT enterprise_id FROM inventory WHERE {range} \
             UNION ALL SELECT enterprise_id FROM sales WHERE {range} UNION ALL SELECT enterprise_id FROM purchase WHERE {range})"
        ),
    )
    .await?;
    if cfg.lake.is_some() && lake_records.iter().all(|(_, n)| *n == 0) && cfg.inputs.is_empty() {
        return Err(PipelineError::Lake {
            path: cfg.lake.clone().unwrap_or_default(),
            reason: format!(
                "no records for {} … {} (check --date / --from / --to)",
                cfg.from, cfg.to
            ),
        });
    }

    // Indicators, scoring, outputs.
    let bar = crate::progress::bar(cfg.progress, indicators::QUERIES.len() as u64, "indicators");
    // When the model is trained, the rules run over its training window too: enterprise-days
    // the rules already flag are left out of what the model learns as normal.
    let train_from = training_start(cfg);
    let query_from = train_from.map_or(cfg.from, |t| t.min(cfg.from));
    let (all_hits, query_seconds) =
        indicators::run_all(&ctx, query_from, cfg.to, &cfg.thresholds, &bar).await?;
    let (hits, earlier_hits): (Vec<Hit>, Vec<Hit>) =
        all_hits.into_iter().partition(|h| h.date >= cfg.from);
    let ent_map: HashMap<String, Enterprise> = enterprises
        .into_iter()
        .map(|e| (e.enterprise_id.clone(), e))
        .collect();
    let prod_map: HashMap<String, Product> = products
        .into_iter()
        .map(|p| (p.product_id.clone(), p))
        .collect();
    std::fs::create_dir_all(&cfg.out).map_err(|e| PipelineError::io(&cfg.out, e))?;
    let flagged_by_rules: HashSet<(String, NaiveDate)> = hits
        .iter()
        .chain(&earlier_hits)
        .map(|h| (h.enterprise_id.clone(), h.date))
        .collect();
    let (anomalies, model) = run_model(&ctx, cfg, train_from, &flagged_by_rules).await?;
    // The credit factor uses the effective credit grade: the reference grade lowered by the
    // credit-file entries of the case ledger still public on the row's day.
    let embedded;
    let rules = match rules {
        Some(r) => r,
        None => {
            embedded = pharmwatch_regulation::Rules::embedded()
                .map_err(|e| PipelineError::regulation("rules", e))?;
            &embedded
        }
    };
    let ledger = crate::ledger::Ledger::open(&cfg.out)?;
    let book = crate::credit::CreditBook::load(
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
    let rows = risk::build_with_credit(&hits, &anomalies, &ent_map, &prod_map, &|e, d, g| {
        book.effective(e, d, g)
    });
    risk::write(&cfg.out, &rows)?;
    crate::store::Store::open(&cfg.out.join(crate::store::STORE_FILE))?.write_risk_list(&rows)?;
    crate::stream::baseline::export(&ctx, &cfg.out, cfg.to, &cfg.thresholds).await?;
    ingest::write_dead_letters(&cfg.out.join("dead_letter.ndjson"), &ingested.dead_letters)?;

    let mut per_indicator: Vec<(String, usize)> = INDICATORS
        .iter()
        .map(|i| {
            (
                i.to_string(),
                hits.iter().filter(|h| h.indicator == *i).count(),
            )
        })
        .collect();
    if model.is_some() {
        per_indicator.push((
            "model_anomaly".to_string(),
            anomalies.iter().filter(|a| a.flagged).count(),
        ));
    }
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
        model,
        seconds: started.elapsed().as_secs_f64(),
        out: cfg.out.clone(),
    };
    let run_path = cfg.out.join("run.json");
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    std::fs::write(&run_path, text + "\n").map_err(|e| PipelineError::io(&run_path, e))?;
    Ok(NightlyOutput {
        summary,
        rows,
        hits,
        anomalies,
        dead_letters: ingested.dead_letters,
    })
}

/// A nightly run followed by its closed loop ([`crate::closedloop`]): the ledger sweep on the
/// run date, then caution notices and cases for the selected risk-list rows. `None` runs the
/// risk list only.
pub async fn run_with(
    cfg: &NightlyConfig,
    closed_loop: Option<&crate::closedloop::ClosedLoop>,
) -> Result<(NightlyOutput, Option<crate::closedloop::ClosedLoopSummary>)> {
    let out = run_rules(cfg, closed_loop.map(|c| &c.rules)).await?;
    let loop_summary = match closed_loop {
        Some(cl) => Some(crate::closedloop::run(&cfg.out, &out.rows, cfg.to, cl)?),
        None => None,
    };
    let snap = snapshot(cfg, loop_summary.as_ref())?;
    crate::report::write_html(&cfg.out, &snap)?;
    Ok((out, loop_summary))
}

/// The store's view of a finished run: the day's list, trend, notices and cases.
fn snapshot(
    cfg: &NightlyConfig,
    loop_summary: Option<&crate::closedloop::ClosedLoopSummary>,
) -> Result<crate::report::Snapshot> {
    let run_date = loop_summary.and_then(|s| s.run_date).unwrap_or(cfg.to);
    let store = crate::store::Store::open(&cfg.out.join(crate::store::STORE_FILE))?;
    crate::report::Snapshot::load(&store, cfg.to, run_date)
}

/// [`run_with`], recording the run in `metrics_textfile` (node_exporter's textfile collector
/// format) when given: a successful run writes every nightly metric; a failed one marks the
/// run failed and keeps the last good run's numbers ([`NightlyMetrics::write_failure`]).
///
/// [`NightlyMetrics::write_failure`]: crate::metrics::NightlyMetrics::write_failure
pub async fn run_recorded(
    cfg: &NightlyConfig,
    closed_loop: Option<&crate::closedloop::ClosedLoop>,
    metrics_textfile: Option<&Path>,
) -> Result<(NightlyOutput, Option<crate::closedloop::ClosedLoopSummary>)> {
    let started = Instant::now();
    let result = run_with(cfg, closed_loop).await;
    let Some(path) = metrics_textfile else {
        return result;
    };
    match result {
        Ok((out, loop_summary)) => {
            let snap = snapshot(cfg, loop_summary.as_ref())?;
            crate::report::run_metrics(&out, &snap)
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
    let earliest = cfg.from - Duration::days(LOOKBACK_DAYS - 31);
    Some(
        cfg.from
            .min(cfg.to - Duration::days((*train_days).max(1) - 1))
            .max(earliest),
    )
}

/// Features, model (trained or loaded) and verdicts for `[from, to]`; writes `model.json` and
/// `features.csv` into the output directory. Training leaves out the enterprise-days in
/// `flagged_by_rules`.
async fn run_model(
    ctx: &SessionContext,
    cfg: &NightlyConfig,
    train_from: Option<NaiveDate>,
    flagged_by_rules: &HashSet<(String, NaiveDate)>,
) -> Result<(Vec<AnomalyScore>, Option<ModelSummary>)> {
    let started = Instant::now();
    let artifact = cfg.out.join("model.json");
    let (set, table, source, train_window, notes, artifact) = match &cfg.model {
        ModelSource::Off => return Ok((Vec::new(), None)),
        ModelSource::Train { families, seed, .. } => {
            let train_from = train_from.unwrap_or(cfg.from);
            let table = anomaly::features(ctx, train_from, cfg.to).await?;
            let trained_at = chrono::Utc::now().to_rfc3339();
            let (set, notes) = anomaly::train(
                &table,
                flagged_by_rules,
                families,
                *seed,
                &trained_at,
                (train_from, cfg.to),
            )?;
            crate::modelcmd::write_artifact(&artifact, &set)?;
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
            let set = crate::modelcmd::read_artifact(path)?;
            anomaly::check_features(&set, path)?;
            let table = anomaly::features(ctx, cfg.from, cfg.to).await?;
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
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((anomalies, Some(summary)))
}

/// Reads the `run.json` a nightly run left beside its risk list.
pub fn read_run(dir: &Path) -> Option<(NaiveDate, NaiveDate)> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let from = NaiveDate::parse_from_str(v.get("from")?.as_str()?, "%Y-%m-%d").ok()?;
    let to = NaiveDate::parse_from_str(v.get("to")?.as_str()?, "%Y-%m-%d").ok()?;
    Some((from, to))
}

/// Terminal columns a character takes: CJK ideographs and full-width forms take two.
fn char_width(c: char) -> usize {
    match c as u32 {
        0x1100..=0x115F
        | 0x2E80..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 => 2,
        _ => 1,
    }
}

/// `s` cut to at most `width` terminal columns (with an ellipsis when cut) and padded to it.
fn fit(s: &str, width: usize) -> String {
    let total: usize = s.chars().map(char_width).sum();
    let mut out = String::new();
    let mut used = 0;
    if total <= width {
        out.push_str(s);
        used = total;
    } else {
        for c in s.chars() {
            if used + char_width(c) > width - 1 {
                break;
            }
            out.push(c);
            used += char_width(c);
        }
        out.push('…');
        used += 1;
    }
    out.push_str(&" ".repeat(width.saturating_sub(used)));
    out
}

/// The top-N table and the summary, as printed at the end of a run.
pub fn report(out: &NightlyOutput, top: usize) -> String {
    let s = &out.summary;
    let mut text = String::new();
    let mut sorted: Vec<&RiskRow> = out.rows.iter().collect();
    sorted.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.date.cmp(&a.date))
            .then_with(|| a.enterprise_id.cmp(&b.enterprise_id))
    });
    text.push_str(&format!(
        "Top {} of {} risk-list rows ({} … {}):\n",
        top.min(sorted.len()),
        sorted.len(),
        s.from,
        s.to
    ));
    text.push_str(&format!(
        "{:<10} {:>5} {:>5}  {:<18} {:<28} {:<10} {}\n",
        "date", "grade", "score", "enterprise_id", "name", "region", "indicators"
    ));
    for r in sorted.iter().take(top) {
        text.push_str(&format!(
            "{:<10} {:>5} {:>5.1}  {:<18} {} {} {}\n",
            r.date.to_string(),
            r.grade,
            r.score,
            r.enterprise_id,
            fit(&r.enterprise_name, 28),
            fit(&r.region_name, 10),
            r.indicators
        ));
    }
    text.push_str("\nSummary\n");
    let lake_total: u64 = s.lake_records.iter().map(|(_, n)| n).sum();
    text.push_str(&format!(
        "  records read (lake, {} … {}): {lake_total} ({})\n",
        s.from,
        s.to,
        s.lake_records
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !s.input_files.is_empty() {
        text.push_str(&format!(
            "  input rows: read {} = accepted {} + rejected {} (dead letter: {})\n",
            s.input_read,
            s.input_accepted,
            s.input_rejected,
            s.out.join("dead_letter.ndjson").display()
        ));
        for f in &s.input_files {
            text.push_str(&format!(
                "    {} [{}]: read {} accepted {} rejected {}\n",
                f.source, f.kind, f.read, f.accepted, f.rejected
            ));
        }
    }
    text.push_str(&format!("  enterprises scored: {}\n", s.enterprises_scored));
    text.push_str(&format!(
        "  risk-list rows: {} ({})\n",
        s.risk_rows,
        s.rows_per_grade
            .iter()
            .map(|(g, n)| format!("{g} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(m) = &s.model {
        text.push_str(&format!(
            "  anomaly model ({}, {}): {} enterprise-days scored, {} flagged at percentile ≥ {} in {:.1} s; segments: {}\n",
            m.source,
            m.artifact.display(),
            m.scored,
            m.flagged,
            m.threshold,
            m.seconds,
            m.segments
                .iter()
                .map(|(k, n, d)| format!("{k} ({n} rows; {})", d.join("+")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for n in &m.notes {
            text.push_str(&format!("    note: {n}\n"));
        }
    }
    text.push_str("  hits per indicator:\n");
    for (i, n) in &s.hits_per_indicator {
        text.push_str(&format!("    {i:<22} {n}\n"));
    }
    text.push_str(&format!(
        "  time: {:.1} s (queries: {})\n",
        s.seconds,
        s.query_seconds
            .iter()
            .map(|(q, t)| format!("{} {t:.2}", q.trim_end_matches(".sql")))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    text.push_str(&format!(
        "  outputs: {}/risk_list.{{parquet,csv,json}}, model.json, features.csv, run.json, dead_letter.ndjson, report.html\n",
        s.out.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width(s: &str) -> usize {
        s.chars().map(char_width).sum()
    }

    #[test]
    fn table_cells_fit_their_columns_whatever_the_script() {
        assert_eq!(fit("包头市", 10), "包头市    ");
        assert_eq!(
            width(&fit("内蒙古仁和大药房连锁有限公司呼伦贝尔第3分店", 28)),
            28
        );
        assert!(
            fit("内蒙古仁和大药房连锁有限公司呼伦贝尔第3分店", 28)
                .trim_end()
                .ends_with('…')
        );
        assert_eq!(fit("abc", 5), "abc  ");
    }
}
