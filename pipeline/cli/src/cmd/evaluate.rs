//! `pharmwatch evaluate`: a risk list against the simulator's labels, with optional thresholds;
//! `pharmwatch evaluate sweep`: detection per magnitude band and false alarms over several
//! seeds of a simulated province (simulate → nightly → evaluate per seed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};

use pharmwatch::evaluate;
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_regulation::Calendar;
use pharmwatch_sim::simulate::noise::NoiseConfig;
use pharmwatch_sim::sweep::{self, SeedRun, SweepConfig, SweepSettings};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvaluateArgs {
    #[command(subcommand)]
    command: Option<EvaluateCommand>,
    /// Risk list CSV written by `nightly`.
    #[arg(long, required = true)]
    risk_list: Option<PathBuf>,
    /// labels.csv written by `simulate`. When the lake's reference table is beside it
    /// (LAKE/reference/enterprises.csv), detection per magnitude band and the false alarms are
    /// printed too.
    #[arg(long, required = true)]
    labels: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
pub enum EvaluateCommand {
    /// Detection rate per anomaly kind × magnitude band (with any item and with the intended
    /// indicator) and false alarms per enterprise-day, over several seeds of a noisy province:
    /// each seed is simulated, run through the nightly job (with the model) and judged. Prints
    /// the table and writes DIR/sweep.json and DIR/evaluation.html (the curves as charts).
    Sweep(SweepArgs),
    /// Score the stored risk lists against the inspectors' dispositions in the workbench
    /// (confirmed = true alarm, dismissed = false alarm, watch = undecided): per grade, per
    /// indicator and for the rows the model flagged, with the dismissal reasons.
    Dispositions {
        #[command(flatten)]
        out: super::OutArg,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Working directory: DIR/seed-N/{lake,out}, DIR/sweep.json, DIR/evaluation.html.
    #[arg(long, default_value = "pharmwatch-sweep")]
    dir: PathBuf,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    seeds: Vec<u64>,
    /// Enterprises per province.
    #[arg(long, default_value_t = 300)]
    enterprises: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// Days of the risk list (the last ones; the anomalies are planted in them).
    #[arg(long, default_value_t = 14)]
    report_days: u32,
    /// Planted anomalies per kind (default: one per 40 enterprises, at least 3).
    #[arg(long)]
    anomalies_per_kind: Option<usize>,
    /// Simulate a noise-free province (default: the realistic noise of `simulate`).
    #[arg(long)]
    no_noise: bool,
    /// Rules only: no anomaly model in the nightly job.
    #[arg(long)]
    no_model: bool,
    /// Seeds run at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Remove each seed's lake once judged (its risk list and labels stay).
    #[arg(long)]
    prune_lakes: bool,
    /// Fail (exit 1) when a target of the summary is missed (detection ≥ 0.95 in the most
    /// obvious third and ≥ 0.6 in the middle third; false alarms ≤ 0.5 %, at grade C/D ≤ 0.05 %).
    #[arg(long)]
    check: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
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

pub fn run(mut a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    match a.command.take() {
        Some(EvaluateCommand::Sweep(s)) => return run_sweep(s),
        Some(EvaluateCommand::Dispositions { out, json }) => {
            let store = pharmwatch::store::Store::open(&pharmwatch::store::location(&out.out))?;
            let score = pharmwatch::serve::labels::score(&store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&score)?);
            } else {
                print!("{}", pharmwatch::serve::labels::report(&score));
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let (Some(risk_list), Some(labels)) = (&a.risk_list, &a.labels) else {
        anyhow::bail!("--risk-list and --labels are required (or `evaluate sweep`)");
    };
    let e = evaluate::evaluate_files(risk_list, labels)?;
    print!("{}", evaluate::report(&e));
    // Per magnitude band, when the lake's reference table is beside the labels.
    if let Some(lake) = labels.parent()
        && lake
            .join(pharmwatch::lake::REFERENCE_DIR)
            .join("enterprises.csv")
            .exists()
    {
        let curves = evaluate::curves_files(risk_list, lake)?;
        let one = SeedRun {
            seed: 0,
            records: 0,
            labels: 0,
            risk_rows: 0,
            curves,
        };
        println!("\nThe same risk list per magnitude band (one run):");
        print!("{}", sweep::table(&sweep::aggregate(&[one])));
    }
    if !check_thresholds(&e, &a) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_sweep(a: SweepArgs) -> anyhow::Result<ExitCode> {
    let cal = Calendar::embedded()?;
    let mut cfg = SweepConfig::new(a.dir, a.seeds, a.enterprises, a.days, a.report_days);
    cfg.anomalies_per_kind = a.anomalies_per_kind;
    if a.no_noise {
        cfg.noise = NoiseConfig::off();
    }
    if a.no_model {
        cfg.model = ModelSource::Off;
    }
    if let Some(j) = a.jobs {
        cfg.jobs = j.max(1);
    }
    cfg.keep_lakes = !a.prune_lakes;
    cfg.progress = !a.quiet;
    let started = Instant::now();
    let out = sweep::run(&cfg, &cal)?;
    print!("{}", sweep::report(&SweepSettings::of(&cfg), &out.summary));
    println!(
        "\n{} seeds on {} threads in {:.1} s\n  figures: {}\n  charts:  {}\n  per seed: {}/seed-N/{{lake,out}}",
        cfg.seeds.len(),
        cfg.jobs.min(cfg.seeds.len()),
        started.elapsed().as_secs_f64(),
        cfg.dir.join(sweep::JSON_FILE).display(),
        cfg.dir.join(sweep::HTML_FILE).display(),
        cfg.dir.display()
    );
    if a.check && sweep::misses_targets(&out.summary) {
        eprintln!("evaluate sweep: a target is missed (marked above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
