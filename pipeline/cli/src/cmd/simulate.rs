//! `pharmwatch simulate`: a province's lake with planted anomalies and their labels.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use pharmwatch::simulate::{self, SimConfig};
use pharmwatch_regulation::Calendar;

#[derive(Debug, Args)]
pub struct SimulateArgs {
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

pub fn run(a: SimulateArgs, cal: &Calendar) -> anyhow::Result<ExitCode> {
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
    let s = simulate::run(&cfg, cal)?;
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
    Ok(ExitCode::SUCCESS)
}
