//! `pharmwatch demo`: simulate, run the nightly job and evaluate, in one command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::demo::{self, DemoConfig};
use pharmwatch_regulation::Calendar;

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
        progress: !a.quiet,
    };
    let out = demo::run(&cfg, cal).await?;
    print!("{}", out.report);
    Ok(ExitCode::SUCCESS)
}
