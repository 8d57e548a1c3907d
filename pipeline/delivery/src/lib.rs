//! `pharmwatch-delivery`: delivery of notices and real-time risk warnings to the enterprise
//! leads (精准推送至企业负责人): a worker that sends the outbox rows of the risk store over each
//! enterprise's registered channels (signed webhook, DingTalk and WeCom robots, e-mail),
//! retries with backoff and falls back from channel to channel and finally to the supervisor's
//! manual-service list. The signed links it sends are verified by `pharmwatch-serve`, which
//! records the service (送达) in the case ledger.
//!
//! Data flow: `notices::issue` inserts a document (or the stream inserts a risk event) → the
//! migration-020 triggers write a `deliveries` row in that same transaction → [`worker::Worker`]
//! leases due rows, resolves the enterprise's contacts ([`pharmwatch_core::contacts::Directory`]), sends
//! ([`channels`]) and records the attempt and the next step ([`outbox`]) → the lead opens the
//! signed acknowledgement link served by `pharmwatch serve` → one `delivered` event in the ledger.
//!
//! Invariants (each stated in its module): never a notice without its delivery row and never a
//! row without its notice (same transaction, enforced by the database); recipients only from
//! the enterprise's own contacts; every attempt recorded with a masked recipient; the same
//! idempotency key on every attempt and channel, so that at-least-once sending plus the
//! receiver's dedupe gives exactly-once delivery across worker crashes and restarts; links
//! verified before anything is shown or written; metrics only through
//! [`metrics::delivery`].

pub mod channels;
pub mod config;
pub mod error;
pub mod mask;
pub mod metrics;
pub mod outbox;
pub mod policy;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use config::DeliveryConfig;
pub use worker::{Worker, WorkerSummary};

/// Starts a worker on `store` in the background (inside `stream` and `serve`); it stops after
/// the send in hand once `stop` is set. Refused at once when a contact's secret is missing.
/// Errors of a pass end the task and are printed.
pub fn spawn_worker(
    cfg: &DeliveryConfig,
    store: &Path,
    stop: Arc<AtomicBool>,
) -> Result<tokio::task::JoinHandle<Option<WorkerSummary>>> {
    let mut worker = Worker::new(cfg, store)?;
    worker.check_secrets()?;
    Ok(tokio::spawn(async move {
        match worker.run(stop, false).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "delivery worker stopped");
                None
            }
        }
    }))
}

pub use error::{DeliveryError, Result};
