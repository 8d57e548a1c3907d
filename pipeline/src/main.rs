//! The `pharmwatch` command line: simulate a province, run the nightly risk list, evaluate it,
//! or do all three with `demo`; fit, apply and evaluate the anomaly model on any table; count
//! working days and decide regulatory measures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{Duration, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};

use pharmwatch::anomaly::{self, ModelSource};
use pharmwatch::calendar::WorkingCalendar;
use pharmwatch::closedloop::{self, ClosedLoop};
use pharmwatch::delivery::{self, DeliveryConfig};
use pharmwatch::demo::{self, DemoConfig};
use pharmwatch::evaluate;
use pharmwatch::guidance;
use pharmwatch::indicators::Thresholds;
use pharmwatch::ingest::InputSpec;
use pharmwatch::ledger::{self, Ledger, RecordedEvent};
use pharmwatch::modelcmd::{self, TrainSpec};
use pharmwatch::nightly::{self, NightlyConfig};
use pharmwatch::notices::{self, AuthorityConfig, DocumentKind, NoticesConfig};
use pharmwatch::produce;
use pharmwatch::regcmd;
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch::stream::config::StreamConfig;
use pharmwatch::stream::service::{self, RunOptions};
use pharmwatch_models::Family;

// Small allocations dominate the stream service's per-record work (strings of decoded
// records, window keys); mimalloc serves them faster than the system allocator. It is built
// without transparent huge pages (feature `no_thp`): zeroing a fresh 2 MiB page on first
// touch cost the stream about a third of its system CPU time and 60 MB of resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Risk early warning for drug supervision (药品风险预警): risk lists from supervision data.
#[derive(Debug, Parser)]
#[command(name = "pharmwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a province's drug supply and write a lake with planted anomalies and their labels.
    Simulate(SimulateArgs),
    /// Compute the risk list (风险清单) for a business day or a range of days.
    Nightly(NightlyArgs),
    /// Compare a risk list with the simulator's labels: precision and recall per anomaly kind.
    Evaluate(EvaluateArgs),
    /// Simulate, run the nightly job over the last 14 days, and evaluate — in one command.
    Demo(DemoArgs),
    /// The anomaly model on any CSV or Parquet table of numeric columns.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run the real-time consumer service: Kafka event topics in, lake, window state and risk
    /// events (风险事件) out. Stops on SIGTERM or Ctrl-C after finishing the batch in hand.
    Stream(StreamArgs),
    /// Publish a lake's records to the event topics in event-time order (demos, tests, benchmarks).
    Produce(ProduceArgs),
    /// Create the stream's topics (events, dead letter, risk events) on the broker.
    Topics(TopicsArgs),
    /// The working-day calendar (工作日历) that every regulatory deadline is counted in.
    Calendar(CalendarArgs),
    /// The measures engine (行政处理措施): findings in, measures with articles and due dates out.
    #[command(subcommand)]
    Measures(MeasuresCommand),
    /// The case ledger (案件台账): cases, their measures, due dates and event trail.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Print the low-risk (低风险名单), key-monitoring (重点监控名单) and fault-tolerance (容错清单)
    /// lists.
    Lists(OutArg),
    /// What applies to one enterprise (合规指引, 免罚早知道、整改有导航): open cases with their
    /// measures and due dates, observation periods, lists, exemptions and what to submit next.
    Guidance(GuidanceArgs),
    /// The enterprise's safety credit file (安全信用档案) from the case ledger and the effective
    /// credit grade it gives on a day, with the reasons (case, measure, public until).
    Credit(CreditArgs),
    /// Push issued notices and real-time risk warnings to the enterprise leads (精准推送): send
    /// what the outbox holds over each enterprise's registered channels (signed webhook,
    /// DingTalk/WeCom robot, e-mail), retrying with backoff and falling back from channel to
    /// channel; what no channel delivers goes to the manual-service list.
    Deliver(DeliverArgs),
    /// Serve the signed acknowledgement links (送达确认, recorded in the case ledger) and each
    /// enterprise's guidance page behind its own signed link; runs the delivery worker too.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct DeliverArgs {
    /// Delivery configuration (TOML, see pipeline/delivery.example.toml).
    #[arg(long, env = "PHARMWATCH_DELIVERY_CONFIG")]
    config: PathBuf,
    /// Send what is due now and exit (for cron); default: keep running until SIGTERM or Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Show what would be sent now (recipients masked); send and change nothing.
    #[arg(long, conflicts_with = "once")]
    dry_run: bool,
    /// Print the manual-service list (deliveries every channel failed) and exit.
    #[arg(long, conflicts_with_all = ["once", "dry_run"])]
    manual: bool,
    #[command(flatten)]
    out: OutArg,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Delivery configuration (TOML): the link key's variable, the links' base URL, and the
    /// worker's contacts and channels.
    #[arg(long, env = "PHARMWATCH_DELIVERY_CONFIG")]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    /// Only serve the links; do not run the delivery worker in this process.
    #[arg(long)]
    no_worker: bool,
    /// Measures rules file replacing the embedded defaults (for the guidance page).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

#[derive(Debug, Args)]
struct CreditArgs {
    /// The enterprise's unified social credit code (统一社会信用代码).
    enterprise_id: String,
    /// The day (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Reference credit grade (default: the enterprise's on the latest risk list in OUT, else B).
    #[arg(long)]
    grade: Option<String>,
    /// Measures rules file replacing the embedded defaults (its `[credit]` section).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

#[derive(Debug, Args)]
struct GuidanceArgs {
    /// The enterprise's unified social credit code (统一社会信用代码).
    enterprise_id: String,
    /// Reference day for working days left and running periods (default: today, Asia/Shanghai).
    #[arg(long)]
    on: Option<NaiveDate>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Measures rules file replacing the embedded defaults.
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

#[derive(Debug, Args)]
struct OutArg {
    /// Output directory holding the ledger (OUT/pharmwatch.db).
    #[arg(long, env = "PHARMWATCH_OUT")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// List the cases (newest first) with the next due date.
    List {
        /// Only open cases.
        #[arg(long)]
        open: bool,
        /// Only this enterprise's cases (credit code).
        #[arg(long)]
        enterprise: Option<String>,
        #[command(flatten)]
        out: OutArg,
    },
    /// Show one case: measures, due dates, lists, documents and the full event trail.
    Show {
        /// The case id.
        case_id: String,
        #[command(flatten)]
        out: OutArg,
    },
    /// Record an event of the closed loop on a case (appended to its trail, never edited).
    Record {
        /// The case id.
        case_id: String,
        /// delivered, report-received, verified, resume-request or lifted.
        #[arg(long)]
        event: String,
        /// Who records it (name of the supervisor).
        #[arg(long)]
        actor: String,
        /// Free text kept with the event.
        #[arg(long, default_value = "")]
        note: String,
        /// Business date of the event (default: today, Asia/Shanghai).
        #[arg(long)]
        at: Option<NaiveDate>,
        /// With `verified`: the enterprise made a written compliance commitment (合规承诺),
        /// which puts it on the low-risk list at the next sweep.
        #[arg(long)]
        commitment: bool,
        #[command(flatten)]
        out: OutArg,
    },
}

#[derive(Debug, Args)]
struct CalendarArgs {
    /// Calendar file (CSV: date,kind,name,source_url) replacing the embedded 2025–2026 one.
    #[arg(long, global = true, env = "PHARMWATCH_CALENDAR")]
    calendar: Option<PathBuf>,
    /// Output directory whose store holds the years loaded with `calendar import` (every
    /// process of the deployment reads them from there); required by `import` and `status`.
    #[arg(long, global = true, env = "PHARMWATCH_OUT")]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: CalendarCommand,
}

#[derive(Debug, Subcommand)]
enum CalendarCommand {
    /// Print the due date N working days after DATE (counting starts the day after DATE).
    AddWorkingDays {
        /// Triggering date (YYYY-MM-DD).
        date: NaiveDate,
        /// Number of working days.
        n: u32,
    },
    /// Print whether DATE is a working day (yes/no) and what kind of day it is. Exit code 0 when
    /// answered, whatever the answer; 1 when the date is outside the calendar.
    IsWorkingDay {
        /// Date (YYYY-MM-DD).
        date: NaiveDate,
    },
    /// Load next year's holidays and make-up working days (from the State Council's notice)
    /// into the store, then set every deadline that waited for that year (each recorded as a
    /// ledger event). FILE is TOML (one [[holiday]] per holiday: name, from, to,
    /// makeup_workdays) or a CSV of one year (date,kind,name,source_url). A bad file is
    /// refused with its line and the reason; a year already loaded needs --replace.
    Import {
        /// The year file.
        file: PathBuf,
        /// Replace a year that is already covered (its deadlines are computed again; changed
        /// ones are recorded as `deadline_changed` events).
        #[arg(long)]
        replace: bool,
        /// Who loads it, for the store and the ledger's events.
        #[arg(long, default_value = "pharmwatch calendar import")]
        actor: String,
        /// Business date of the ledger events (default: today, Asia/Shanghai).
        #[arg(long)]
        at: Option<NaiveDate>,
    },
    /// Print the covered years (and where each comes from), the last covered day, and the
    /// deadlines waiting for a year not loaded yet. Warns when fewer than 60 days are left.
    Status {
        /// The day to count from (default: today, Asia/Shanghai).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MeasuresCommand {
    /// Decide the measures for a JSON array of findings (schemas/contracts/findings.md) and print
    /// the JSON array of decisions. Refused findings are reported on stderr (finding, field,
    /// reason); the others are still decided; exit code 2 when any finding was refused.
    Decide(DecideArgs),
}

#[derive(Debug, Args)]
struct DecideArgs {
    /// The findings (JSON array).
    #[arg(long)]
    findings: PathBuf,
    /// Rules file (TOML) replacing the embedded defaults (regulation/data/rules.toml).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Calendar file replacing the embedded 2025–2026 one.
    #[arg(long, env = "PHARMWATCH_CALENDAR")]
    calendar: Option<PathBuf>,
    /// Open or update a case in the ledger for every decision (needs --out).
    #[arg(long, requires = "out")]
    record: bool,
    /// Output directory holding the ledger (OUT/pharmwatch.db).
    #[arg(long, env = "PHARMWATCH_OUT")]
    out: Option<PathBuf>,
    /// Who decided, for the ledger's events.
    #[arg(long, default_value = "pharmwatch measures")]
    actor: String,
    /// Business date the cases are opened or updated on (default: today, Asia/Shanghai).
    #[arg(long)]
    decided_on: Option<NaiveDate>,
}

#[derive(Debug, Args)]
struct TopicsArgs {
    /// Configuration file (brokers and topic names); PHARMWATCH_* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Partitions per topic (the same for every event topic: partitions are the unit of scale).
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

#[derive(Debug, Args)]
struct StreamArgs {
    /// Configuration file (TOML, see pharmwatch.example.toml); PHARMWATCH_* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Exit once every assigned partition is read to its end and nothing arrived for this many
    /// seconds (for demos, tests and benchmarks).
    #[arg(long)]
    exit_when_idle: Option<f64>,
    /// Also run the delivery worker (risk warnings and notices to the enterprise leads) with
    /// this delivery configuration, on the stream's store.
    #[arg(long, env = "PHARMWATCH_DELIVERY_CONFIG")]
    deliver_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// The lake to publish (written by `pharmwatch simulate`).
    #[arg(long)]
    lake: PathBuf,
    /// Configuration file (brokers and topic names); PHARMWATCH_* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// First business day to publish (default: the lake's first).
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last business day to publish (default: the lake's last).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Messages per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Fit a model on a table and write the artifact (JSON).
    Train(ModelTrainArgs),
    /// Score a table with a model: its columns plus anomaly_score, anomaly_percentile and
    /// anomaly_reasons, as CSV.
    Score(ModelScoreArgs),
    /// Fit on a table without its label column, score it, print ROC-AUC and average precision.
    Evaluate(ModelEvaluateArgs),
}

#[derive(Debug, Args)]
struct FitArgs {
    /// Columns that are not features (comma-separated).
    #[arg(long, value_delimiter = ',')]
    exclude_columns: Vec<String>,
    /// Detector families of the ensemble (comma-separated: mahalanobis, kmeans, gmm, pca,
    /// iforest); default: the measured best.
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct ModelTrainArgs {
    /// Table (.csv with a header row, or .parquet).
    #[arg(long)]
    input: PathBuf,
    /// Artifact to write.
    #[arg(long)]
    out: PathBuf,
    /// Fit one model per value of this column (e.g. an enterprise type).
    #[arg(long)]
    segment_column: Option<String>,
    #[command(flatten)]
    fit: FitArgs,
}

#[derive(Debug, Args)]
struct ModelScoreArgs {
    /// Artifact written by `model train` or by the nightly job (OUT/model.json).
    #[arg(long)]
    model: PathBuf,
    /// Table to score.
    #[arg(long)]
    input: PathBuf,
    /// CSV to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct ModelEvaluateArgs {
    /// Labelled table.
    #[arg(long)]
    input: PathBuf,
    /// Label column: 1 = anomaly, 0 = normal.
    #[arg(long)]
    label_column: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fit: FitArgs,
}

fn families(names: &[String]) -> anyhow::Result<Vec<Family>> {
    if names.is_empty() {
        return Ok(pharmwatch_models::model::DEFAULT_FAMILIES.to_vec());
    }
    Ok(names
        .iter()
        .map(|n| Family::parse(n))
        .collect::<Result<Vec<_>, _>>()?)
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Number of enterprises (manufacturers, wholesalers, chain headquarters, stores, pharmacies).
    #[arg(long, default_value_t = 300)]
    enterprises: usize,
    /// Number of days to simulate.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Random seed: the same seed gives the same files, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First simulated day (YYYY-MM-DD); the holiday calendar covers 2025–2026.
    #[arg(long)]
    start: Option<NaiveDate>,
    /// Plant anomalies in the last N days (after at least 35 days of history).
    #[arg(long, default_value_t = 14)]
    anomaly_days: u32,
    /// Anomalies planted per kind (default: one per 40 enterprises, at least 3; 0 for none).
    #[arg(long)]
    anomalies_per_kind: Option<usize>,
    /// Output directory (the lake).
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct NightlyArgs {
    /// The lake written by `simulate` or by the stream service.
    #[arg(long)]
    lake: Option<PathBuf>,
    /// Directory of the reference tables (default: LAKE/reference).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Input file (CSV or NDJSON) to read as well: KIND=PATH, or PATH whose name starts with the
    /// kind (sales, purchase, production, inventory, product_test, inspection). Repeatable.
    #[arg(long = "input", value_name = "[KIND=]PATH")]
    inputs: Vec<String>,
    /// Business day of the risk list (Asia/Shanghai); default: yesterday.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    date: Option<NaiveDate>,
    /// First day of a range (backfill); needs --to.
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// Last day of a range (backfill); needs --from.
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    /// Output directory for risk_list.{parquet,csv,json}, run.json and dead_letter.ndjson.
    #[arg(long)]
    out: PathBuf,
    /// Rows in the printed top-N table.
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// Score with this model artifact instead of fitting one on the run's data.
    #[arg(long, conflicts_with = "no_model")]
    model: Option<PathBuf>,
    /// Rules only: no anomaly model.
    #[arg(long)]
    no_model: bool,
    /// Percentile (0–1) from which the model flags an enterprise-day (model_anomaly).
    #[arg(long, default_value_t = anomaly::DEFAULT_THRESHOLD)]
    anomaly_threshold: f64,
    /// Days of the model's training window (ending with the last day of the run).
    #[arg(long, default_value_t = anomaly::DEFAULT_TRAIN_DAYS)]
    train_days: i64,
    /// Detector families of the ensemble (comma-separated); default: the measured best.
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Seed of the model fit.
    #[arg(long, default_value_t = 1)]
    model_seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// No case-ledger sweep and no caution notices (risk list only).
    #[arg(long)]
    no_notices: bool,
    /// Notices configuration (TOML: grades, indicators, authority; see
    /// pipeline/notices.example.toml); default: grades C and D, every indicator.
    #[arg(long, env = "PHARMWATCH_NOTICES")]
    notices_config: Option<PathBuf>,
    /// Measures rules file replacing the embedded defaults.
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Run date of the ledger sweep and the notices (default: the last business day).
    #[arg(long)]
    run_date: Option<NaiveDate>,
    /// Write the run's metrics (status, duration, the day's risk list by grade and region,
    /// model, notices, cases) to this file for node_exporter's textfile collector, e.g.
    /// /var/lib/prometheus/node-exporter/pharmwatch_nightly.prom. A failed run is recorded too.
    #[arg(long, env = "PHARMWATCH_METRICS_TEXTFILE", value_name = "PATH")]
    metrics_textfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EvaluateArgs {
    /// Risk list CSV written by `nightly`.
    #[arg(long)]
    risk_list: PathBuf,
    /// labels.csv written by `simulate`.
    #[arg(long)]
    labels: PathBuf,
    /// Fail (exit 1) if a rule kind's recall is below this.
    #[arg(long)]
    min_recall: Option<f64>,
    /// Fail (exit 1) if a rule kind's precision is below this.
    #[arg(long)]
    min_precision: Option<f64>,
    /// Fail (exit 1) if the model's recall of the subtle kind is below this.
    #[arg(long)]
    min_model_recall: Option<f64>,
    /// Fail (exit 1) if the model's precision on the subtle kind is below this.
    #[arg(long)]
    min_model_precision: Option<f64>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Working directory (lake and outputs go under it).
    #[arg(long, default_value = "pharmwatch-demo")]
    dir: PathBuf,
    /// Number of enterprises.
    #[arg(long, default_value_t = 300)]
    enterprises: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Today in Asia/Shanghai.
/// The reference credit grade and name of an enterprise on the latest risk list in `out`
/// (`B` and no name when it is not there).
fn reference_grade(out: &std::path::Path, enterprise_id: &str) -> (String, String) {
    let rows = pharmwatch::risk::read_csv(&out.join("risk_list.csv")).unwrap_or_default();
    rows.iter()
        .filter(|r| r.enterprise_id == enterprise_id)
        .max_by_key(|r| r.date)
        .map(|r| {
            let g = if r.reference_credit_grade.is_empty() {
                r.credit_grade.clone()
            } else {
                r.reference_credit_grade.clone()
            };
            (g, r.enterprise_name.clone())
        })
        .unwrap_or_else(|| ("B".to_string(), String::new()))
}

fn today() -> NaiveDate {
    (Utc::now() + Duration::hours(8)).date_naive()
}

/// Yesterday in Asia/Shanghai.
fn yesterday() -> NaiveDate {
    (Utc::now() + Duration::hours(8)).date_naive() - Duration::days(1)
}

fn check_thresholds(e: &evaluate::Evaluation, a: &EvaluateArgs) -> bool {
    let mut ok = true;
    for k in &e.kinds {
        let model = k.kind == evaluate::SUBTLE || k.kind == evaluate::MODEL;
        let (min_recall, min_precision) = match (model, k.kind == evaluate::SUBTLE) {
            (false, _) => (a.min_recall, a.min_precision),
            (true, true) => (a.min_model_recall, a.min_model_precision),
            // model_anomaly has no labels of its own; the subtle kind carries its figures.
            (true, false) => continue,
        };
        if let Some(r) = min_recall
            && k.labels > 0
            && k.recall() < r
        {
            eprintln!("recall of {} is {:.2}, below {r}", k.kind, k.recall());
            ok = false;
        }
        if let Some(p) = min_precision
            && k.hits > 0
            && k.precision() < p
        {
            eprintln!("precision of {} is {:.2}, below {p}", k.kind, k.precision());
            ok = false;
        }
    }
    ok
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cal = WorkingCalendar::embedded().context("loading the embedded working-day calendar")?;
    match cli.command {
        Command::Simulate(a) => {
            let cfg = SimConfig {
                enterprises: a.enterprises,
                days: a.days,
                start: a.start.unwrap_or_else(simulate::default_start),
                seed: a.seed,
                anomaly_days: a.anomaly_days,
                anomalies_per_kind: a.anomalies_per_kind,
                out: a.out.clone(),
                progress: !a.quiet,
            };
            let s = simulate::run(&cfg, &cal)?;
            println!(
                "simulated {} enterprises and {} products, {} … {}, seed {}",
                s.enterprises, s.products, s.start, s.end, s.seed
            );
            for (k, n) in &s.records {
                println!("  {k:<13} {n:>10} records");
            }
            println!(
                "  total         {:>10} records in {:.1} s ({:.0} records/s)",
                s.total_records,
                s.seconds,
                s.total_records as f64 / s.seconds.max(1e-9)
            );
            println!("  planted anomalies: {} (labels.csv)", s.labels);
            println!("lake written to {}", a.out.display());
        }
        Command::Nightly(a) => {
            let textfile = a.metrics_textfile.clone();
            let started = std::time::Instant::now();
            if let Err(e) = run_nightly(a).await {
                // A run that cannot even start (arguments, rules, notices configuration) is a
                // failed run too; one that failed later is already recorded, and recording it
                // again only updates its duration.
                if let Some(path) = &textfile
                    && let Err(w) = pharmwatch::metrics::NightlyMetrics::write_failure(
                        path,
                        started.elapsed().as_secs_f64(),
                    )
                {
                    eprintln!("warning: the failed run could not be recorded: {w}");
                }
                return Err(e);
            }
        }
        Command::Evaluate(a) => {
            let e = evaluate::evaluate_files(&a.risk_list, &a.labels)?;
            print!("{}", evaluate::report(&e));
            if !check_thresholds(&e, &a) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Demo(a) => {
            let cfg = DemoConfig {
                dir: a.dir,
                enterprises: a.enterprises,
                days: a.days,
                report_days: 14,
                seed: a.seed,
                progress: !a.quiet,
            };
            let out = demo::run(&cfg, &cal).await?;
            print!("{}", out.report);
        }
        Command::Model(ModelCommand::Train(a)) => {
            let spec = TrainSpec {
                exclude: a.fit.exclude_columns,
                segment_column: a.segment_column,
                families: families(&a.fit.detectors)?,
                seed: a.fit.seed,
            };
            let set = modelcmd::train(&a.input, &a.out, &spec).await?;
            for (seg, m) in &set.segments {
                println!(
                    "segment {seg}: {} rows, {} features ({} constant), detectors {}",
                    m.training_rows,
                    m.features.len(),
                    m.features.len() - m.active.len(),
                    m.detector_names().join("+")
                );
                for s in &m.skipped {
                    println!("  skipped {}: {}", s.family.as_str(), s.reason);
                }
            }
            println!("model written to {}", a.out.display());
        }
        Command::Model(ModelCommand::Score(a)) => {
            let n = modelcmd::score(&a.model, &a.input, &a.out).await?;
            println!("{n} rows scored; written to {}", a.out.display());
        }
        Command::Model(ModelCommand::Evaluate(a)) => {
            let spec = TrainSpec {
                exclude: a.fit.exclude_columns,
                segment_column: None,
                families: families(&a.fit.detectors)?,
                seed: a.fit.seed,
            };
            let r = modelcmd::evaluate(&a.input, &a.label_column, &spec).await?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} rows, {} features, {} anomalies ({:.1}%)\n  ROC-AUC {:.4}  average precision {:.4}\n  fit {:.3} s, score {:.3} s ({})",
                    r.input.display(),
                    r.rows,
                    r.features,
                    r.anomalies,
                    100.0 * r.anomalies as f64 / r.rows.max(1) as f64,
                    r.roc_auc,
                    r.average_precision,
                    r.fit_seconds,
                    r.score_seconds,
                    r.detectors.join("+")
                );
            }
        }
        Command::Calendar(a) => return run_calendar(a),
        Command::Measures(MeasuresCommand::Decide(a)) => return run_decide(a),
        Command::Case(c) => return run_case(c),
        Command::Lists(o) => {
            let ledger = Ledger::open(&o.out)?;
            print!("{}", ledger::format_lists(&ledger.list_entries(None)?));
        }
        Command::Guidance(a) => {
            guidance::validate_enterprise_id(&a.enterprise_id)?;
            let rules = regcmd::load_rules(a.rules.as_deref())?;
            let ledger = Ledger::open(&a.out.out)?;
            let cal = ledger.calendar(&cal)?;
            let g = guidance::guidance(
                &ledger,
                &a.enterprise_id,
                a.on.unwrap_or_else(today),
                &rules,
                &cal,
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&g)?);
            } else {
                print!("{}", guidance::format_text(&g));
            }
        }
        Command::Credit(a) => {
            guidance::validate_enterprise_id(&a.enterprise_id)?;
            let rules = regcmd::load_rules(a.rules.as_deref())?;
            let ledger = Ledger::open(&a.out.out)?;
            let (grade, name) = match a.grade {
                Some(g) => (g, String::new()),
                None => reference_grade(&a.out.out, &a.enterprise_id),
            };
            let f = pharmwatch::credit::credit_file(
                &ledger,
                &a.enterprise_id,
                &name,
                &grade,
                a.on.unwrap_or_else(today),
                &rules,
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                print!("{}", pharmwatch::credit::format(&f));
            }
        }
        Command::Stream(a) => return run_stream(a).await,
        Command::Deliver(a) => return run_deliver(a).await,
        Command::Serve(a) => return run_serve(a, cal).await,
        Command::Produce(a) => return run_produce(a).await,
        Command::Topics(a) => {
            let cfg = StreamConfig::load(a.config.as_deref())?;
            let created = service::create_topics(&cfg, a.partitions).await?;
            println!(
                "{} topic(s) created with {} partitions{}",
                created.len(),
                a.partitions,
                if created.is_empty() {
                    " (all existed)".to_string()
                } else {
                    format!(": {}", created.join(", "))
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_calendar(a: CalendarArgs) -> anyhow::Result<ExitCode> {
    let needs_out = || {
        a.out
            .as_deref()
            .context("give --out OUT: the store of that output directory keeps the loaded years")
    };
    match a.command {
        CalendarCommand::AddWorkingDays { date, n } => {
            let cal = regcmd::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
            println!("{}", regcmd::add_working_days(&cal, date, n)?);
        }
        CalendarCommand::IsWorkingDay { date } => {
            let cal = regcmd::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
            println!("{}", regcmd::is_working_day(&cal, date)?);
        }
        CalendarCommand::Import {
            ref file,
            replace,
            ref actor,
            at,
        } => {
            let year = pharmwatch_regulation::CalendarYear::from_path(file)?;
            let base = regcmd::load_calendar(a.calendar.as_deref())?;
            let mut ledger = Ledger::open(needs_out()?)?;
            let report = ledger.import_calendar_year(
                &base,
                &year,
                replace,
                &file.display().to_string(),
                actor,
                at.unwrap_or_else(today),
            )?;
            print!("{}", regcmd::format_import(&year, &report));
        }
        CalendarCommand::Status { on, json } => {
            let base = regcmd::load_calendar(a.calendar.as_deref())?;
            let ledger = Ledger::open(needs_out()?)?;
            let status = regcmd::calendar_status(&ledger, &base, on.unwrap_or_else(today))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", regcmd::format_status(&status));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_decide(a: DecideArgs) -> anyhow::Result<ExitCode> {
    let rules = regcmd::load_rules(a.rules.as_deref())?;
    // With --out, the years loaded into that store count too.
    let cal = regcmd::calendar_for(a.calendar.as_deref(), a.out.as_deref())?;
    let out = regcmd::decide_file(&a.findings, &rules, &cal)?;
    println!("{}", out.decisions_json()?);
    if a.record
        && let Some(dir) = &a.out
    {
        let mut ledger = Ledger::open(dir)?;
        let on = a.decided_on.unwrap_or_else(today);
        let (opened, updated) =
            regcmd::record_decisions_on(&mut ledger, &out.decisions, &a.actor, on)?;
        eprintln!(
            "ledger {}: {opened} case(s) opened, {updated} updated",
            ledger.path().display()
        );
    }
    for e in &out.errors {
        eprintln!("{}: {e}", a.findings.display());
    }
    if out.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {} findings refused",
            out.errors.len(),
            out.errors.len() + out.decisions.len()
        );
        Ok(ExitCode::from(2))
    }
}

fn run_case(c: CaseCommand) -> anyhow::Result<ExitCode> {
    match c {
        CaseCommand::List {
            open,
            enterprise,
            out,
        } => {
            let ledger = Ledger::open(&out.out)?;
            print!(
                "{}",
                ledger::format_list(&ledger.list(open, enterprise.as_deref())?)
            );
        }
        CaseCommand::Show { case_id, out } => {
            let ledger = Ledger::open(&out.out)?;
            print!("{}", ledger::format_show(&ledger.show(&case_id)?));
            let store = pharmwatch::store::Store::open(ledger.path())?;
            print!(
                "{}",
                delivery::outbox::format_case_deliveries(
                    &delivery::outbox::case_deliveries(&store, &case_id)?,
                    "pharmwatch deliver --manual"
                )
            );
        }
        CaseCommand::Record {
            case_id,
            event,
            actor,
            note,
            at,
            commitment,
            out,
        } => {
            let event = RecordedEvent::parse(&event)?;
            let mut ledger = Ledger::open(&out.out)?;
            let at = at.unwrap_or_else(today);
            ledger.record(&case_id, event, &actor, &note, at, commitment)?;
            if event == RecordedEvent::Lifted {
                // 第二十三条: the lifting is served in writing.
                let rules = regcmd::load_rules(None)?;
                let (doc, path) = notices::issue(
                    &mut ledger,
                    &case_id,
                    DocumentKind::LiftingNotice,
                    at,
                    &actor,
                    &AuthorityConfig::default(),
                    &rules,
                    Some(&out.out),
                )?;
                if let Some(p) = path {
                    println!("{} {} written to {}", doc.number, doc.kind, p.display());
                }
            }
            let case = ledger.show(&case_id)?;
            println!(
                "case {case_id}: {} recorded on {at} by {actor}; case is {}",
                event.event_name(),
                case.case.status
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pharmwatch nightly`: the risk list, the closed loop, the report and the run's metrics.
async fn run_nightly(a: NightlyArgs) -> anyhow::Result<()> {
    let (from, to) = match (a.date, a.from, a.to) {
        (Some(d), _, _) => (d, d),
        (None, Some(f), Some(t)) => (f, t),
        _ => {
            let d = yesterday();
            (d, d)
        }
    };
    if a.lake.is_none() && a.inputs.is_empty() {
        bail!("nothing to read: give --lake DIR and/or --input FILE");
    }
    let inputs = a
        .inputs
        .iter()
        .map(|s| InputSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = NightlyConfig {
        lake: a.lake,
        reference: a.reference,
        inputs,
        from,
        to,
        out: a.out,
        thresholds: Thresholds::default(),
        top: a.top,
        progress: !a.quiet,
        model: match (a.no_model, a.model) {
            (true, _) => ModelSource::Off,
            (false, Some(p)) => ModelSource::Load(p),
            (false, None) => ModelSource::Train {
                families: families(&a.detectors)?,
                seed: a.model_seed,
                train_days: a.train_days,
            },
        },
        anomaly_threshold: a.anomaly_threshold,
    };
    if !(0.0..=1.0).contains(&cfg.anomaly_threshold) {
        bail!("--anomaly-threshold must be between 0 and 1");
    }
    let closed_loop = if a.no_notices {
        None
    } else {
        Some(ClosedLoop {
            notices: match &a.notices_config {
                Some(p) => NoticesConfig::from_path(p)?,
                None => NoticesConfig::default(),
            },
            rules: regcmd::load_rules(a.rules.as_deref())?,
            // The built-in years and the ones loaded into this output directory's store.
            calendar: regcmd::calendar_for(None, Some(&cfg.out))?,
            run_date: a.run_date,
        })
    };
    let (out, loop_summary) =
        nightly::run_recorded(&cfg, closed_loop.as_ref(), a.metrics_textfile.as_deref()).await?;
    print!("{}", nightly::report(&out, cfg.top));
    if let Some(s) = loop_summary {
        print!("{}", closedloop::report(&s));
    }
    Ok(())
}

/// Sets `flag` on SIGTERM or Ctrl-C.
fn stop_on_signal(flag: std::sync::Arc<std::sync::atomic::AtomicBool>, who: &'static str) {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("{who}: cannot watch SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        eprintln!("{who}: stopping after the work in hand");
        flag.store(true, Ordering::SeqCst);
    });
}

async fn run_deliver(a: DeliverArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let cfg = DeliveryConfig::load(&a.config)?;
    let store = a.out.out.join(pharmwatch::store::STORE_FILE);
    if a.manual {
        let s = pharmwatch::store::Store::open(&store)?;
        let list = delivery::outbox::manual_list(&s)?;
        println!(
            "manual-service list ({}): {} delivery(ies)",
            cfg.manual_service,
            list.len()
        );
        print!(
            "{}",
            delivery::outbox::format_case_deliveries(&list, &cfg.manual_service)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut worker = delivery::Worker::new(&cfg, &store)?;
    if a.dry_run {
        print!("{}", worker.dry_run()?);
        return Ok(ExitCode::SUCCESS);
    }
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), "deliver");
    let started = std::time::Instant::now();
    let s = worker.run(stop, a.once).await?;
    println!(
        "deliver: {} attempt(s) in {:.1} s: {} delivered, {} to retry, {} contact(s) failed, \
         {} on the manual-service list",
        s.attempts,
        started.elapsed().as_secs_f64(),
        s.delivered,
        s.retries,
        s.contacts_failed,
        s.failed
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_serve(a: ServeArgs, cal: WorkingCalendar) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cfg = DeliveryConfig::load(&a.config)?;
    let rules = regcmd::load_rules(a.rules.as_deref())?;
    let ledger = Ledger::open(&a.out.out)?;
    let store = ledger.path().to_path_buf();
    let signer = delivery::links::Signer::from_env(
        &cfg.link_key_env,
        &cfg.link_base_url,
        cfg.link_ttl_days,
    )?;
    let authority = AuthorityConfig::default();
    let state = Arc::new(delivery::serve::ServeState::new(
        ledger,
        signer,
        rules,
        cal,
        &authority.name,
        &format!(
            "{} {}",
            authority.contact_department, authority.contact_phone
        ),
    )?);
    let (addr, server) = delivery::serve::spawn(&a.listen, state).await?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), "serve");
    let worker = if a.no_worker {
        None
    } else {
        Some(delivery::spawn_worker(&cfg, &store, stop.clone())?)
    };
    eprintln!(
        "serve: acknowledgement and guidance links on http://{addr} (public base {}); \
         metrics on http://{addr}/metrics; delivery worker {}",
        cfg.link_base_url,
        if worker.is_some() { "running" } else { "off" }
    );
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Some(w) = worker
        && let Ok(Some(s)) = w.await
    {
        eprintln!(
            "serve: delivery worker: {} attempt(s), {} delivered, {} failed",
            s.attempts, s.delivered, s.failed
        );
    }
    server.abort();
    Ok(ExitCode::SUCCESS)
}

async fn run_stream(a: StreamArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cfg = StreamConfig::load(a.config.as_deref())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let worker = match &a.deliver_config {
        Some(path) => {
            let dcfg = DeliveryConfig::load(path)?;
            // Opening the store first applies the migrations the worker needs.
            drop(pharmwatch::store::Store::open(&cfg.store)?);
            Some(delivery::spawn_worker(&dcfg, &cfg.store, shutdown.clone())?)
        }
        None => None,
    };
    stop_on_signal(shutdown.clone(), "stream");
    let opts = RunOptions {
        exit_when_idle: a.exit_when_idle.map(std::time::Duration::from_secs_f64),
    };
    let summary = service::run(cfg, opts, shutdown.clone()).await;
    // The worker stops with the service (also when the service stopped on its own).
    shutdown.store(true, Ordering::SeqCst);
    if let Some(w) = worker
        && let Ok(Some(s)) = w.await
    {
        eprintln!(
            "stream: delivery worker: {} attempt(s), {} delivered, {} failed",
            s.attempts, s.delivered, s.failed
        );
    }
    let summary = summary?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

async fn run_produce(a: ProduceArgs) -> anyhow::Result<ExitCode> {
    let cfg = StreamConfig::load(a.config.as_deref())?;
    let s = produce::produce(&cfg, &a.lake, a.from, a.to, a.rate).await?;
    for (t, n) in &s.per_topic {
        println!("  {t:<28} {n:>10} messages");
    }
    println!(
        "produced {} messages in {:.2} s ({:.0} messages/s)",
        s.sent, s.seconds, s.rate
    );
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes, `: `-joined, leaving out a cause whose text the message already
/// shows (the pipeline's error variants print their source inline).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
