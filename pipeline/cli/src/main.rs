//! The `pharmwatch` command line: simulate a province, run the nightly risk list, evaluate it,
//! or do all three with `demo`; fit, apply and evaluate the anomaly model on any table; count
//! working days and decide regulatory measures; run the stream, delivery and serve services.
//! Argument parsing and dispatch only: each command is a module of [`cmd`].

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pharmwatch_regulation::Calendar;

mod cmd;

// Small allocations dominate the stream service's per-record work (strings of decoded
// records, window keys); mimalloc serves them faster than the system allocator. It is built
// without transparent huge pages (feature `no_thp`): zeroing a fresh 2 MiB page on first
// touch cost the stream about a third of its system CPU time and 60 MB of resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "pharmwatch", version, about, long_about = None)]
struct Cli {
    /// Log format of the long-running services (stream, deliver, serve): `human` lines, or
    /// `json` objects (one per line, with the fields topic, partition, offset, case_id,
    /// notice_id …) for a log collector.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "PHARMWATCH_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace) or a filter such as
    /// `info,pharmwatch_stream=debug`; default: `RUST_LOG`, else `info`.
    #[arg(long, global = true, env = "PHARMWATCH_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the log subscriber: stderr, the level from `--log-level`, `RUST_LOG` or `info`.
fn init_logs(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a province's drug supply and write a lake with planted anomalies and their labels.
    Simulate(cmd::simulate::SimulateArgs),
    /// Compute the risk list (风险清单) for a business day or a range of days.
    Nightly(cmd::nightly::NightlyArgs),
    /// Compare a risk list with the simulator's labels: precision and recall per anomaly kind.
    Evaluate(cmd::evaluate::EvaluateArgs),
    /// Simulate, run the nightly job over the last 14 days, and evaluate — in one command.
    Demo(cmd::demo::DemoArgs),
    /// The anomaly model on any CSV or Parquet table of numeric columns.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Run the real-time consumer service: Kafka event topics in, lake, window state and risk
    /// events (风险事件) out. Stops on SIGTERM or Ctrl-C after finishing the batch in hand.
    Stream(cmd::stream::StreamArgs),
    /// Publish a lake's records to the event topics in event-time order (demos, tests, benchmarks).
    Produce(cmd::produce::ProduceArgs),
    /// Create the stream's topics (events, dead letter, risk events) on the broker.
    Topics(cmd::topics::TopicsArgs),
    /// Merge each closed day partition of the lake (the stream's many small files, late
    /// uploads) into one file per kind and day, swapped in so that a reader running meanwhile
    /// (the nightly job) reads every row exactly once; replaced files are deleted after a
    /// grace period by a later run.
    Compact(cmd::compact::CompactArgs),
    /// The working-day calendar (工作日历) that every regulatory deadline is counted in.
    Calendar(cmd::calendar::CalendarArgs),
    /// The measures engine (行政处理措施): findings in, measures with articles and due dates out.
    #[command(subcommand)]
    Measures(cmd::measures::MeasuresCommand),
    /// The case ledger (案件台账): cases, their measures, due dates and event trail.
    #[command(subcommand)]
    Case(cmd::case::CaseCommand),
    /// Print the low-risk (低风险名单), key-monitoring (重点监控名单) and fault-tolerance (容错清单)
    /// lists.
    Lists(cmd::OutArg),
    /// Apply the store's pending migrations (OUT/pharmwatch.db) and list every migration with
    /// when it was applied.
    Migrate(cmd::OutArg),
    /// What applies to one enterprise (合规指引, 免罚早知道、整改有导航): open cases with their
    /// measures and due dates, observation periods, lists, exemptions and what to submit next.
    Guidance(cmd::guidance::GuidanceArgs),
    /// The enterprise's safety credit file (安全信用档案) from the case ledger and the effective
    /// credit grade it gives on a day, with the reasons (case, measure, public until).
    Credit(cmd::credit::CreditArgs),
    /// One step of a case's credit repair (信用修复): apply (once the minimum publicity period
    /// passed and the measures are carried out; at once on the 蒙药监 (十) green channel),
    /// review, grant (an approver other than the reviewer) or refuse.
    CreditRepair(cmd::credit::RepairArgs),
    /// The publication feed (信用信息公示): every decision public on a day, about whom, from
    /// when and until when; entries leave it by themselves at the end of their period.
    Publicity(cmd::credit::PublicityArgs),
    /// Risk-weighted random inspection plans (双随机、一公开): `inspect plan --period 2027-Q1`.
    #[command(subcommand)]
    Inspect(cmd::inspect::InspectCommand),
    /// Push issued notices and real-time risk warnings to the enterprise leads (精准推送): send
    /// what the outbox holds over each enterprise's registered channels (signed webhook,
    /// DingTalk/WeCom robot, e-mail), retrying with backoff and falling back from channel to
    /// channel; what no channel delivers goes to the manual-service list.
    Deliver(cmd::deliver::DeliverArgs),
    /// Serve the workbench of the supervisors and approvers (风险研判、文书审批、案件办理), the
    /// enterprise end (文书签收、整改报告), the JSON API and the signed links of the notices;
    /// runs the delivery worker too.
    Serve(cmd::serve::ServeArgs),
    /// The signed links of the notices: revoke those of one document or risk warning.
    #[command(subcommand)]
    Links(cmd::links::LinksCommand),
    /// Accounts of the workbench: add one, list them, disable or enable one, make an API token.
    #[command(subcommand)]
    User(cmd::user::UserCommand),
}

impl Command {
    /// The configuration file of the command (`--config`, else `PHARMWATCH_CONFIG`).
    fn config_path(&self) -> Option<std::path::PathBuf> {
        let given = match self {
            Command::Nightly(a) => a.config.clone(),
            Command::Produce(a) => a.config.clone(),
            Command::Stream(a) => a.config.clone(),
            Command::Topics(a) => a.config.clone(),
            Command::Deliver(a) => Some(a.config.clone()),
            Command::Serve(a) => Some(a.config.clone()),
            _ => None,
        };
        given.or_else(|| std::env::var_os("PHARMWATCH_CONFIG").map(Into::into))
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cal = Calendar::embedded().context("loading the embedded working-day calendar")?;
    // Where the store lives ([store] url, PHARMWATCH__STORE__URL): every command that opens
    // `OUT/pharmwatch.db` opens the configured PostgreSQL database instead.
    let config = cli.command.config_path();
    pharmwatch::store::configure(pharmwatch_core::config::load::<
        pharmwatch::store::StoreConfig,
    >(config.as_deref())?)?;
    match cli.command {
        Command::Simulate(a) => cmd::simulate::run(a, &cal).await,
        Command::Nightly(a) => cmd::nightly::run(a).await,
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Demo(a) => cmd::demo::run(a, &cal).await,
        Command::Model(m) => cmd::model::run(m).await,
        Command::Calendar(a) => cmd::calendar::run(a),
        Command::Measures(m) => cmd::measures::run(m),
        Command::Case(c) => cmd::case::run(c),
        Command::Lists(o) => cmd::lists::run(o),
        Command::Migrate(o) => cmd::migrate::run(o),
        Command::Guidance(a) => cmd::guidance::run(a, &cal),
        Command::Credit(a) => cmd::credit::run(a),
        Command::CreditRepair(a) => cmd::credit::repair(a),
        Command::Publicity(a) => cmd::credit::publicity(a),
        Command::Inspect(c) => cmd::inspect::run(c).await,
        Command::Stream(a) => cmd::stream::run(a).await,
        Command::Deliver(a) => cmd::deliver::run(a).await,
        Command::Serve(a) => cmd::serve::run(a, cal).await,
        Command::User(u) => cmd::user::run(u),
        Command::Links(c) => cmd::links::run(c),
        Command::Produce(a) => cmd::produce::run(a).await,
        Command::Topics(a) => cmd::topics::run(a).await,
        Command::Compact(a) => cmd::compact::run(a).await,
    }
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
    init_logs(cli.log_format, cli.log_level.as_deref());
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
