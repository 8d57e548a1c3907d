//! `pharmwatch stream`: the real-time consumer service, with the delivery worker when configured.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::delivery::{self, DeliveryConfig};
use pharmwatch::stream::config::StreamConfig;
use pharmwatch::stream::service::{self, RunOptions};

use super::stop_on_signal;

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Configuration (pharmwatch.toml, see config/pharmwatch.example.toml): its [stream]
    /// table, and [delivery] with --deliver; PHARMWATCH__STREAM__* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Exit once every assigned partition is read to its end, nothing arrived for this many
    /// seconds and no day waits out its close grace (for demos, tests and benchmarks).
    #[arg(long)]
    exit_when_idle: Option<f64>,
    /// Also run the delivery worker (risk warnings and notices to the enterprise leads) on the
    /// stream's store, with the [delivery] table of --config.
    #[arg(long, requires = "config")]
    deliver: bool,
}

pub async fn run(a: StreamArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cfg = StreamConfig::load(a.config.as_deref())?;
    cfg.store = pharmwatch::store::or_configured(&cfg.store);
    let shutdown = Arc::new(AtomicBool::new(false));
    let worker = match (a.deliver, &a.config) {
        (true, Some(path)) => {
            let dcfg = DeliveryConfig::load(path)?;
            // Opening the store first applies the migrations the worker needs.
            drop(pharmwatch::store::Store::open(&cfg.store)?);
            Some(delivery::spawn_worker(&dcfg, &cfg.store, shutdown.clone())?)
        }
        _ => None,
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
        tracing::info!(
            attempts = s.attempts,
            delivered = s.delivered,
            failed = s.failed,
            "delivery worker stopped"
        );
    }
    let summary = summary?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}
