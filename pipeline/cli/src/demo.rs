//! `pharmwatch demo`: simulate a province, run the nightly job over its last 14 days, and
//! evaluate the risk list against the planted anomalies — the whole spine in one command,
//! with no broker or database to set up.

use std::path::PathBuf;

use chrono::Duration;

use crate::error::Result;
use pharmwatch_batch::nightly::{self, NightlyConfig};
use pharmwatch_core::anomaly::ModelSource;
use pharmwatch_core::indicators::Thresholds;
use pharmwatch_regulation::Calendar;
use pharmwatch_sim::evaluate::{self, Evaluation};
use pharmwatch_sim::simulate::{self, SimConfig};

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Working directory: `DIR/lake` and `DIR/out`.
    pub dir: PathBuf,
    /// Enterprises.
    pub enterprises: usize,
    /// Days simulated.
    pub days: u32,
    /// Days of the risk list (the last ones).
    pub report_days: u32,
    /// Seed.
    pub seed: u64,
    /// Show progress.
    pub progress: bool,
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
    };
    let sim = simulate::run(&sim_cfg, cal)?;
    let mut report = format!(
        "Simulated {} enterprises, {} products, {} … {}: {} records, {} planted anomalies in {:.1} s ({:.0} records/s)\n  lake: {}\n\n",
        sim.enterprises,
        sim.products,
        sim.start,
        sim.end,
        sim.total_records,
        sim.labels,
        sim.seconds,
        sim.total_records as f64 / sim.seconds.max(1e-9),
        lake.display()
    );
    let from = sim.end - Duration::days(i64::from(cfg.report_days.max(1)) - 1);
    let nightly_cfg = NightlyConfig {
        lake: Some(lake.clone()),
        reference: None,
        inputs: Vec::new(),
        from,
        to: sim.end,
        out: out.clone(),
        thresholds: Thresholds::default(),
        top: 10,
        progress: cfg.progress,
        model: ModelSource::default(),
        anomaly_threshold: pharmwatch_core::anomaly::DEFAULT_THRESHOLD,
    };
    // With the report (`report.html`), as the printed outputs say; no closed loop.
    let (nightly, _) = nightly::run_with(&nightly_cfg, None).await?;
    report.push_str(&nightly::report(&nightly, 10));
    let evaluation =
        evaluate::evaluate_files(&out.join("risk_list.csv"), &lake.join("labels.csv"))?;
    report.push('\n');
    report.push_str(&evaluate::report(&evaluation));
    report.push_str(&format!(
        "\nWhere everything went:\n  lake (Parquet by kind/date, reference tables, labels.csv): {}\n  risk list: {}/risk_list.{{parquet,csv,json}}\n  run summary: {}/run.json\n",
        lake.display(),
        out.display(),
        out.display()
    ));
    Ok(DemoOutput {
        sim,
        nightly,
        evaluation,
        report,
    })
}
