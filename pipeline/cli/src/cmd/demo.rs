//! `pharmwatch demo`: simulate a noisy province, run the nightly job and evaluate, in one
//! command; then a small sweep over further seeds for the curves' spread.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::demo::{self, DemoConfig, DemoSweep};
use pharmwatch_regulation::Calendar;
use pharmwatch_sim::simulate::noise::NoiseConfig;

#[derive(Debug, Args)]
pub struct DemoArgs {
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
    /// Simulate a noise-free province (default: the realistic noise of `simulate`).
    #[arg(long)]
    no_noise: bool,
    /// Seeds of the sweep after the main run (the seed and the ones after it; 0: no sweep).
    #[arg(long, default_value_t = 5)]
    sweep_seeds: usize,
    /// Enterprises per province of the sweep.
    #[arg(long, default_value_t = 100)]
    sweep_enterprises: usize,
    /// Days simulated per province of the sweep.
    #[arg(long, default_value_t = 50)]
    sweep_days: u32,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub async fn run(a: DemoArgs, cal: &Calendar) -> anyhow::Result<ExitCode> {
    let cfg = DemoConfig {
        dir: a.dir,
        enterprises: a.enterprises,
        days: a.days,
        report_days: 14,
        seed: a.seed,
        noise: if a.no_noise {
            NoiseConfig::off()
        } else {
            NoiseConfig::default()
        },
        sweep: (a.sweep_seeds > 0).then_some(DemoSweep {
            seeds: a.sweep_seeds,
            enterprises: a.sweep_enterprises,
            days: a.sweep_days,
        }),
        progress: !a.quiet,
    };
    let out = demo::run(&cfg, cal).await?;
    print!("{}", out.report);
    Ok(ExitCode::SUCCESS)
}
