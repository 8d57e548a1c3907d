//! One module per command of the `pharmwatch` binary: its arguments (clap) and a `run` that
//! calls the role crates and prints for people. Shared here: the output-directory argument,
//! today's and yesterday's business day, the model families and the signal handler.

use chrono::{Duration, NaiveDate, Utc};
use clap::Args;
use std::path::PathBuf;

use pharmwatch_models::Family;

pub mod calendar;
pub mod case;
pub mod compact;
pub mod credit;
pub mod deliver;
pub mod demo;
pub mod evaluate;
pub mod guidance;
pub mod inspect;
pub mod links;
pub mod lists;
pub mod measures;
pub mod migrate;
pub mod model;
pub mod nightly;
pub mod produce;
pub mod serve;
pub mod simulate;
pub mod stream;
pub mod topics;
pub mod user;

#[derive(Debug, Args)]
pub struct OutArg {
    /// Output directory holding the ledger (OUT/pharmwatch.db).
    #[arg(long, env = "PHARMWATCH_OUT")]
    out: PathBuf,
}

/// Today in Asia/Shanghai.
pub fn today() -> NaiveDate {
    (Utc::now() + Duration::hours(8)).date_naive()
}

/// Yesterday in Asia/Shanghai.
pub fn yesterday() -> NaiveDate {
    (Utc::now() + Duration::hours(8)).date_naive() - Duration::days(1)
}

pub fn families(names: &[String]) -> anyhow::Result<Vec<Family>> {
    if names.is_empty() {
        return Ok(pharmwatch_models::model::DEFAULT_FAMILIES.to_vec());
    }
    Ok(names
        .iter()
        .map(|n| Family::parse(n))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Sets `flag` on SIGTERM or Ctrl-C.
pub fn stop_on_signal(flag: std::sync::Arc<std::sync::atomic::AtomicBool>, who: &'static str) {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(service = who, error = %e, "cannot watch SIGTERM");
                        let _ = ctrl_c.await;
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!(service = who, "stopping after the work in hand");
        flag.store(true, Ordering::SeqCst);
    });
}
