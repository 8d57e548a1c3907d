//! `pharmwatch simulate`: a province's lake with planted anomalies and their labels.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use pharmwatch::simulate::noise::NoiseConfig;
use pharmwatch::simulate::{self, SimConfig};
use pharmwatch_core::remote_lake::{self, RemoteLake};
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
    /// Output directory (the lake), or `s3://bucket/prefix` for a lake on S3-compatible
    /// object storage (connection from the AWS_* variables; see README).
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// A noise-free province: every holding reconciles to the package, prices fixed within
    /// ±2 %, nothing late, no bad rows (the default is a realistic, noisy province).
    #[arg(long)]
    no_noise: bool,
    /// Turn one part of the noise off (repeatable). Parts and the rate each uses:
    /// miscount (stocktake miscounts of ±1–2 packages on 2 % of product-days);
    /// returns (1–3 packages back to the supplier on 0.3 % of retail holding-days);
    /// promotions (2–4 days at 0.75–0.9 of the price, 1.3–2.2× the demand, a fifth of the
    /// assortment: chain-wide 1/30 chain-days, single store 1/60 store-days);
    /// prices (lasting changes of 0.94–1.08×: chain-wide 1/60 chain-days, single pharmacy
    /// 1/90 days); rhythm (15 % of single pharmacies closed on Sundays and the Spring
    /// Festival); products (listed 1/45 retail enterprise-days, delisted 1/1500 holding-days);
    /// enterprises (2 % of retail enterprises open during the run, 1 % close);
    /// late (1 % of enterprise-days uploaded a day late); bad-rows (5 per 100 000 records,
    /// to OUT/inbox/ for `nightly --input`).
    #[arg(long, value_name = "PART")]
    noise_off: Vec<String>,
    /// Threads in all, simulating and writing Parquet (default: one per core); the files are
    /// the same bytes whatever the number.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

pub async fn run(a: SimulateArgs, cal: &Calendar) -> anyhow::Result<ExitCode> {
    // A lake on object storage is written to a local staging folder, then published object by
    // object with the manifest last.
    let remote = if remote_lake::is_remote(&a.out) {
        Some(RemoteLake::open(&a.out)?)
    } else {
        None
    };
    let staging = match remote {
        Some(_) => Some(
            tempfile::Builder::new()
                .prefix("pharmwatch-sim-")
                .tempdir()?,
        ),
        None => None,
    };
    let mut noise = if a.no_noise {
        NoiseConfig::off()
    } else {
        NoiseConfig::default()
    };
    for part in &a.noise_off {
        noise = noise.without(part).map_err(anyhow::Error::msg)?;
    }
    let cfg = SimConfig {
        enterprises: a.enterprises,
        days: a.days,
        start: a.start.unwrap_or_else(simulate::default_start),
        seed: a.seed,
        anomaly_days: a.anomaly_days,
        anomalies_per_kind: a.anomalies_per_kind,
        out: staging
            .as_ref()
            .map_or_else(|| a.out.clone(), |d| d.path().to_path_buf()),
        progress: !a.quiet,
        noise,
    };
    let threads = a
        .threads
        .map_or_else(simulate::default_threads, usize::from);
    let s = simulate::run_on(&cfg, cal, threads)?;
    if let Some(r) = &remote {
        let n = r.publish(&cfg.out).await?;
        println!("published {n} objects to {}", r.url());
    }
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
    if s.late_records > 0 {
        println!(
            "  noise: {} records uploaded a day late (late-*.parquet)",
            s.late_records
        );
    }
    if s.bad_rows > 0 {
        println!(
            "  noise: {} bad rows in {}/inbox (read them with nightly --input to see them rejected)",
            s.bad_rows,
            a.out.display()
        );
    }
    println!("lake written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
