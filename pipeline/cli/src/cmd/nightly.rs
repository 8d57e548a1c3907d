//! `pharmwatch nightly`: the risk list of a day or a range, the closed loop, the report and the run's metrics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::NaiveDate;
use clap::Args;

use pharmwatch::anomaly::ModelSource;
use pharmwatch::closedloop::{self, ClosedLoop};
use pharmwatch::ingest::InputSpec;
use pharmwatch::measures;
use pharmwatch::nightly::{self, NightlyConfig, NightlySettings};
use pharmwatch::notices::NoticesConfig;

use super::{families, yesterday};

#[derive(Debug, Args)]
pub struct NightlyArgs {
    /// The lake written by `simulate` or by the stream service: a folder, or
    /// `s3://bucket/prefix` on S3-compatible object storage (connection from the AWS_*
    /// variables; see README).
    #[arg(long)]
    lake: Option<PathBuf>,
    /// Directory of the reference tables (default: LAKE/reference).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Input file (CSV or NDJSON) to read as well: KIND=PATH, or PATH whose name starts with the
    /// kind (sales, purchase, production, inventory, product_test, inspection). Repeatable.
    /// A rejected row goes to OUT/dead_letter.ndjson and the run exits with status 2.
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
    /// Target false-alarm rate of the model's flags (model_anomaly): the share of clean
    /// enterprise-days it may flag, e.g. 0.001 = one in a thousand. Each segment's score tail
    /// is calibrated to it, so a province with more anomalies gets more flags. Default:
    /// nightly.model_false_alarm_rate of the configuration (0.001).
    #[arg(long, value_name = "RATE")]
    model_false_alarm_rate: Option<f64>,
    /// Days of the model's training window (ending with the last day of the run); default:
    /// nightly.train_days of the configuration (28).
    #[arg(long)]
    train_days: Option<i64>,
    /// Detector families of the ensemble (comma-separated); default: the measured best.
    #[arg(long, value_delimiter = ',')]
    detectors: Vec<String>,
    /// Seed of the model fit; default: nightly.model_seed of the configuration (1).
    #[arg(long)]
    model_seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// No case-ledger sweep and no caution notices (risk list only).
    #[arg(long)]
    no_notices: bool,
    /// Configuration (pharmwatch.toml, see config/pharmwatch.example.toml): its [nightly]
    /// table (model, thresholds) and [notices] table (grades, indicators, authority).
    /// Default: the built-in values, with PHARMWATCH__NIGHTLY__* / PHARMWATCH__NOTICES__*
    /// overrides.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Measures rules file replacing the embedded defaults.
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Run date of the ledger sweep and the notices (default: the last business day).
    #[arg(long)]
    run_date: Option<NaiveDate>,
    /// After the run, compact the lake partitions it read — its closed days, up to the last
    /// day of the run — as `pharmwatch compact` does (default grace and settling times), and
    /// carry the day store over to the compacted files (the next night reads its days back).
    /// Needs write access to the lake.
    #[arg(long)]
    compact: bool,
    /// Write the run's metrics (status, duration, the day's risk list by grade and region,
    /// model, notices, cases) to this file for node_exporter's textfile collector, e.g.
    /// /var/lib/prometheus/node-exporter/pharmwatch_nightly.prom. A failed run is recorded too.
    #[arg(long, env = "PHARMWATCH_METRICS_TEXTFILE", value_name = "PATH")]
    metrics_textfile: Option<PathBuf>,
}

pub async fn run(a: NightlyArgs) -> anyhow::Result<ExitCode> {
    let textfile = a.metrics_textfile.clone();
    let started = std::time::Instant::now();
    let rejected = match run_nightly(a).await {
        Ok(n) => n,
        Err(e) => {
            // A run that cannot even start (arguments, rules, notices configuration) is a
            // failed run too; one that failed later is already recorded, and recording it
            // again only updates its duration.
            if let Some(path) = &textfile
                && let Err(w) = pharmwatch_batch::metrics::NightlyMetrics::write_failure(
                    path,
                    started.elapsed().as_secs_f64(),
                )
            {
                eprintln!("warning: the failed run could not be recorded: {w}");
            }
            return Err(e);
        }
    };
    // The run is complete either way; status 2 says that not every input row was accepted.
    if rejected > 0 {
        eprintln!(
            "{rejected} input row(s) rejected: see dead_letter.ndjson in the output directory"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pharmwatch nightly`: the risk list, the closed loop, the report and the run's metrics.
/// Runs the job; returns the number of input rows rejected into the dead letter.
async fn run_nightly(a: NightlyArgs) -> anyhow::Result<u64> {
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
    let settings: NightlySettings = pharmwatch::config::load(a.config.as_deref())?;
    settings.validate()?;
    let rate = a
        .model_false_alarm_rate
        .unwrap_or(settings.model_false_alarm_rate);
    nightly::check_false_alarm_rate(rate, "--model-false-alarm-rate")?;
    let cfg = NightlyConfig {
        lake: a.lake,
        reference: a.reference,
        inputs,
        from,
        to,
        out: a.out,
        thresholds: settings.thresholds.clone(),
        top: a.top,
        progress: !a.quiet,
        model: match (a.no_model, a.model) {
            (true, _) => ModelSource::Off,
            (false, Some(p)) => ModelSource::Load(p),
            (false, None) => ModelSource::Train {
                families: families(&a.detectors)?,
                seed: a.model_seed.unwrap_or(settings.model_seed),
                train_days: a.train_days.unwrap_or(settings.train_days),
            },
        },
        anomaly_threshold: pharmwatch::anomaly::threshold_for_rate(rate),
    };
    let closed_loop = if a.no_notices {
        None
    } else {
        let mut notices = NoticesConfig::load(a.config.as_deref())?;
        // The notices address the leads the lake's registered contacts name.
        let lake_contacts = cfg.lake.as_ref().map(|l| {
            l.join(pharmwatch::lake::REFERENCE_DIR)
                .join(pharmwatch::contacts::CONTACTS_FILE)
        });
        if notices.contacts.is_none() {
            notices.contacts = lake_contacts.filter(|p| p.is_file());
        }
        Some(ClosedLoop {
            notices,
            rules: measures::load_rules(a.rules.as_deref())?,
            // The built-in years and the ones loaded into this output directory's store.
            calendar: measures::calendar_for(None, Some(&cfg.out))?,
            run_date: a.run_date,
        })
    };
    let (out, loop_summary) =
        nightly::run_recorded(&cfg, closed_loop.as_ref(), a.metrics_textfile.as_deref()).await?;
    print!("{}", nightly::report(&out, cfg.top));
    let rejected = out.summary.input_rejected;
    if let Some(s) = loop_summary {
        print!("{}", closedloop::report(&s));
    }
    if a.compact {
        let opts = pharmwatch::compact::CompactOptions::default();
        let done = nightly::compact_closed_days(&cfg, &opts).await?;
        let r = &done.report;
        println!(
            "compaction of the closed days read: {} of {} partition(s) merged, files {} → {}, \
             {} row(s); {} stored day(s) carried over to the compacted files",
            r.merged(),
            r.partitions.len(),
            r.total(|p| p.files_before as u64),
            r.total(|p| p.files_after as u64),
            r.total(|p| p.rows),
            done.days_rekeyed
        );
    }
    Ok(rejected)
}
