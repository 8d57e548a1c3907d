//! `pharmwatch deliver`: the delivery worker, once or until stopped; dry run; the manual-service list.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::delivery::{self, DeliveryConfig};

use super::{OutArg, stop_on_signal};

#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// Configuration (pharmwatch.toml, see config/pharmwatch.example.toml): its [delivery]
    /// table; PHARMWATCH__DELIVERY__* variables override it.
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: PathBuf,
    /// Send what is due now and exit (for cron); default: keep running until SIGTERM or Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Show what would be sent now (recipients masked) and every contact whose secret is
    /// missing (`PROBLEM` lines, exit code 2); send and change nothing.
    #[arg(long, conflicts_with = "once")]
    dry_run: bool,
    /// Print the manual-service list (deliveries every channel failed) and exit.
    #[arg(long, conflicts_with_all = ["once", "dry_run"])]
    manual: bool,
    #[command(flatten)]
    out: OutArg,
}

pub async fn run(a: DeliverArgs) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let cfg = DeliveryConfig::load(&a.config)?;
    let store = pharmwatch::store::location(&a.out.out);
    if a.manual {
        let s = pharmwatch::store::Store::open(&store)?;
        let list = pharmwatch::service::manual_list(&s)?;
        println!(
            "manual-service list ({}): {} delivery(ies)",
            cfg.manual_service,
            list.len()
        );
        print!(
            "{}",
            pharmwatch::service::format_case_deliveries(&list, &cfg.manual_service)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut worker = delivery::Worker::new(&cfg, &store)?;
    if a.dry_run {
        print!("{}", worker.dry_run()?);
        // A contact that could not be sent to is a configuration to fix before the run.
        return Ok(if worker.unresolved_secrets().is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    worker.check_secrets()?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), "deliver");
    let started = std::time::Instant::now();
    let s = worker.run(stop, a.once).await?;
    println!(
        "deliver: {} attempt(s) in {:.1} s: {} delivered, {} to retry, {} contact(s) failed, \
         {} on the manual-service list",
        s.attempts,
        started.elapsed().as_secs_f64(),
        s.delivered,
        s.retries,
        s.contacts_failed,
        s.failed
    );
    Ok(ExitCode::SUCCESS)
}
