//! `pharmwatch demo`: simulate a noisy province, run the nightly job over its last 14 days,
//! and judge the risk list against the planted anomalies — recall and precision per kind,
//! then detection per magnitude band and the false alarms on enterprises without labels (the
//! curves of [`pharmwatch_sim::sweep`]) — the whole spine in one command, with no broker or
//! database to set up. Optionally a small sweep over further seeds (`DemoSweep`) gives the
//! curves their seed-to-seed spread.
//!
//! Outputs: `DIR/lake`, `DIR/out` (risk list, `report.html`, and the one-seed curves as
//! `sweep.json` and `evaluation.html`), and with a sweep `DIR/sweep`.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Duration;

use crate::error::Result;
use pharmwatch_batch::nightly;
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_core::error::CoreError;
use pharmwatch_regulation::Calendar;
use pharmwatch_sim::evaluate::{self, Evaluation};
use pharmwatch_sim::simulate::noise::NoiseConfig;
use pharmwatch_sim::simulate::{self, SimConfig};
use pharmwatch_sim::sweep::{self, SeedRun, Sweep, SweepConfig, SweepSettings};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Working directory: `DIR/lake`, `DIR/out` and `DIR/sweep`.
    pub dir: PathBuf,
    /// Enterprises.
    pub enterprises: usize,
    /// Days simulated.
    pub days: u32,
    /// Days of the risk list (the last ones).
    pub report_days: u32,
    /// Seed.
    pub seed: u64,
    /// The simulator's noise ([`NoiseConfig::default`]: a realistic province).
    pub noise: NoiseConfig,
    /// A sweep over further seeds after the main run, if any.
    pub sweep: Option<DemoSweep>,
    /// Show progress.
    pub progress: bool,
}

/// The demo's sweep: `seeds` seeds from the demo's own seed on, each province of
/// `enterprises` × `days` with the demo's risk-list days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSweep {
    /// Seeds (the demo's seed and the ones after it).
    pub seeds: usize,
    /// Enterprises per province.
    pub enterprises: usize,
    /// Days simulated per province.
    pub days: u32,
}

/// What the demo produced.
#[derive(Debug)]
pub struct DemoOutput {
    /// Simulator summary.
    pub sim: simulate::SimSummary,
    /// Nightly output.
    pub nightly: nightly::NightlyOutput,
    /// Evaluation.
    pub evaluation: Evaluation,
    /// The main run's curves (one seed).
    pub curves: Sweep,
    /// The sweep, when one was asked for.
    pub sweep: Option<Sweep>,
    /// Printed report.
    pub report: String,
}

/// Runs the demo.
pub async fn run(cfg: &DemoConfig, cal: &Calendar) -> Result<DemoOutput> {
    let lake = cfg.dir.join("lake");
    let out = cfg.dir.join("out");
    let sim_cfg = SimConfig {
        enterprises: cfg.enterprises,
        days: cfg.days,
        start: simulate::default_start(),
        seed: cfg.seed,
        anomaly_days: cfg.report_days,
        anomalies_per_kind: None,
        out: lake.clone(),
        progress: cfg.progress,
        noise: cfg.noise.clone(),
    };
    let sim = simulate::run(&sim_cfg, cal)?;
    let mut report = format!(
        "Simulated {} enterprises, {} products, {} … {} (noise {}): {} records, {} planted anomalies in {:.1} s ({:.0} records/s)\n  lake: {}\n\n",
        sim.enterprises,
        sim.products,
        sim.start,
        sim.end,
        if cfg.noise.enabled { "on" } else { "off" },
        sim.total_records,
        sim.labels,
        sim.seconds,
        sim.total_records as f64 / sim.seconds.max(1e-9),
        lake.display()
    );
    let from = sim.end - Duration::days(i64::from(cfg.report_days.max(1)) - 1);
    let mut nightly_cfg = sweep::nightly_config(&lake, &out, from, sim.end, ModelSource::default());
    nightly_cfg.progress = cfg.progress;
    // With the report (`report.html`), as the printed outputs say; no closed loop.
    let (nightly, _) = nightly::run_with(&nightly_cfg, None).await?;
    report.push_str(&nightly::report(&nightly, 10));
    let evaluation =
        evaluate::evaluate_files(&out.join("risk_list.csv"), &lake.join("labels.csv"))?;
    report.push('\n');
    report.push_str(&evaluate::report(&evaluation));

    let curves = one_seed_curves(cfg, &sim, &nightly, &lake, &out)?;
    report.push('\n');
    report.push_str(&sweep::report(&curves.settings, &curves.summary));
    let swept = match cfg.sweep {
        Some(s) => Some(run_sweep(cfg, s, cal, &mut report).await?),
        None => None,
    };
    report.push_str(&format!(
        "\nWhere everything went:\n  lake (Parquet by kind/date, reference tables, labels.csv): {}\n  risk list: {}/risk_list.{{parquet,csv,json}}\n  run summary: {}/run.json\n  supervisors' report: {}/report.html\n  curves of this run: {}/{} (figures in {})\n",
        lake.display(),
        out.display(),
        out.display(),
        out.display(),
        out.display(),
        sweep::HTML_FILE,
        sweep::JSON_FILE,
    ));
    if let Some(s) = &swept {
        report.push_str(&format!(
            "  curves over {} seeds: {}/{}\n",
            s.runs.len(),
            cfg.dir.join("sweep").display(),
            sweep::HTML_FILE
        ));
    }
    report.push_str(
        "  the full sweep: pharmwatch evaluate sweep --seeds 1,2,3,4,5 (300 enterprises × 60 days each)\n",
    );
    Ok(DemoOutput {
        sim,
        nightly,
        evaluation,
        curves,
        sweep: swept,
        report,
    })
}

/// The main run's curves, written as `out/sweep.json` and `out/evaluation.html`.
fn one_seed_curves(
    cfg: &DemoConfig,
    sim: &simulate::SimSummary,
    nightly: &nightly::NightlyOutput,
    lake: &std::path::Path,
    out: &std::path::Path,
) -> Result<Sweep> {
    let run = SeedRun {
        seed: cfg.seed,
        records: sim.total_records,
        labels: sim.labels,
        risk_rows: nightly.rows.len(),
        curves: evaluate::curves_files(&out.join("risk_list.csv"), lake)?,
    };
    let mut settings = SweepSettings::of(&SweepConfig::new(
        out.to_path_buf(),
        vec![cfg.seed],
        cfg.enterprises,
        cfg.days,
        cfg.report_days,
    ));
    settings.noise = cfg.noise.enabled;
    let curves = Sweep {
        settings,
        summary: sweep::aggregate(std::slice::from_ref(&run)),
        runs: vec![run],
    };
    sweep::write(out, &curves)?;
    Ok(curves)
}

/// The demo's sweep in `DIR/sweep`, on the blocking pool (each seed has its own runtime);
/// appends its table and time to `report`.
async fn run_sweep(
    cfg: &DemoConfig,
    s: DemoSweep,
    cal: &Calendar,
    report: &mut String,
) -> Result<Sweep> {
    let seeds: Vec<u64> = (0..s.seeds as u64).map(|i| cfg.seed + i).collect();
    let mut scfg = SweepConfig::new(
        cfg.dir.join("sweep"),
        seeds,
        s.enterprises,
        s.days,
        cfg.report_days,
    );
    scfg.noise = cfg.noise.clone();
    scfg.progress = cfg.progress;
    scfg.keep_lakes = false;
    let (cal, started) = (cal.clone(), Instant::now());
    let job = scfg.clone();
    let swept = tokio::task::spawn_blocking(move || sweep::run(&job, &cal))
        .await
        .map_err(|e| CoreError::Internal(format!("the demo's sweep did not finish: {e}")))??;
    report.push('\n');
    report.push_str(&sweep::report(&swept.settings, &swept.summary));
    report.push_str(&format!(
        "({} seeds on {} threads in {:.1} s)\n",
        scfg.seeds.len(),
        scfg.jobs,
        started.elapsed().as_secs_f64()
    ));
    Ok(swept)
}
