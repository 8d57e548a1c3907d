//! `pharmwatch serve`: the workbench, the enterprise end, the API and the signed links, with
//! the delivery worker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use pharmwatch::delivery::{self, DeliveryConfig};
use pharmwatch::ledger::Ledger;
use pharmwatch::measures;
use pharmwatch::notices::NoticesConfig;
use pharmwatch_regulation::Calendar;

use super::{OutArg, stop_on_signal};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration (pharmwatch.toml): [serve] (address, worker), [delivery] (the link key's
    /// variable, the links' base URL, the worker's contacts and channels) and
    /// [notices.authority] (the authority the pages name).
    #[arg(long, env = "PHARMWATCH_CONFIG")]
    pub(crate) config: PathBuf,
    /// Address to listen on; default: serve.listen of the configuration (127.0.0.1:8088).
    #[arg(long)]
    listen: Option<String>,
    /// Only serve the links; do not run the delivery worker in this process.
    #[arg(long)]
    no_worker: bool,
    /// Measures rules file replacing the embedded defaults (for the guidance page).
    #[arg(long, env = "PHARMWATCH_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    out: OutArg,
}

pub async fn run(a: ServeArgs, cal: Calendar) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cfg = DeliveryConfig::load(&a.config)?;
    let settings: pharmwatch::serve::ServeSettings = pharmwatch::config::load(Some(&a.config))?;
    let listen = a.listen.unwrap_or(settings.listen);
    let rules = measures::load_rules(a.rules.as_deref())?;
    let ledger = Ledger::open(&a.out.out)?;
    let store = ledger.path().to_path_buf();
    let signer = cfg.signer()?;
    let mut notices = NoticesConfig::load(Some(&a.config))?;
    // The notices address the leads the delivery's contacts name.
    if notices.contacts.is_none() && cfg.contacts.is_file() {
        notices.contacts = Some(cfg.contacts.clone());
    }
    if let Err(e) = notices.authority() {
        tracing::warn!(error = %e, "no document can be approved until the authority is configured");
    }
    let closed_loop = pharmwatch::closedloop::ClosedLoop {
        notices,
        rules,
        calendar: cal,
        run_date: None,
    };
    let mut state =
        pharmwatch::serve::ServeState::new(ledger, signer, closed_loop, a.out.out.clone())?;
    // Over HTTPS the session cookies are marked Secure too.
    state.secure_cookies = settings.secure_cookies || settings.tls_cert.is_some();
    let state = Arc::new(state);
    let (scheme, (addr, server)) = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = pharmwatch::serve::tls_config(cert, key)?;
            (
                "https",
                pharmwatch::serve::spawn_tls(&listen, state, tls).await?,
            )
        }
        (None, None) => ("http", pharmwatch::serve::spawn(&listen, state).await?),
        _ => anyhow::bail!("[serve] tls_cert and tls_key are given together or not at all"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone(), "serve");
    let worker = if a.no_worker || !settings.worker {
        None
    } else {
        Some(delivery::spawn_worker(&cfg, &store, stop.clone())?)
    };
    tracing::info!(
        listen = %format!("{scheme}://{addr}"),
        public_base = %cfg.link_base_url,
        metrics = %format!("{scheme}://{addr}/metrics"),
        worker = worker.is_some(),
        "serving the workbench (/wb), the enterprise end (/ent), the API (/api/v1) and the signed links"
    );
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
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
    server.abort();
    Ok(ExitCode::SUCCESS)
}
