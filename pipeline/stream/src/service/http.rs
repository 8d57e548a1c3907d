//! The service's HTTP side: `/metrics` (every metric set this process exposes) and
//! `/healthz` (not ready when the consuming loop has not polled for a minute or stopped, when
//! no broker of the cluster is connected, or when the store does not answer a query within
//! [`STORE_PROBE_TIMEOUT`]).
//!
//! The store probe runs on a connection of its own (opened at the first probe, re-opened
//! after a failure), never the consuming loop's: a probe neither waits for a batch's
//! transaction nor delays one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pharmwatch_core::db::Conn;

use chrono::Utc;
use serde::Serialize;

use crate::error::Result;
use pharmwatch_core::error::CoreError;

/// Health seen by `/healthz`.
#[derive(Debug, Clone, Default, Serialize)]
pub(super) struct Health {
    pub(super) status: &'static str,
    pub(super) assigned_partitions: Vec<i32>,
    pub(super) last_poll_unix: i64,
    pub(super) batches: u64,
    /// `up`, `down` (no broker of the cluster connected: the service waits and reconnects) or
    /// `unknown` (before librdkafka's first statistics).
    pub(super) broker: &'static str,
}

/// Longest a health probe waits for the store.
pub(super) const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's answer to a probe: `{backend, ms}`, or `{error}`.
async fn probe_store(
    store: PathBuf,
    conn: Arc<Mutex<Option<Conn>>>,
) -> Result<serde_json::Value, String> {
    let started = Instant::now();
    let probe = tokio::task::spawn_blocking(move || {
        let mut guard = conn
            .lock()
            .map_err(|_| "the probe's connection is poisoned".to_string())?;
        if guard.is_none() {
            *guard = Some(Conn::open_read_only(&store).map_err(|e| e.to_string())?);
        }
        let c = guard.as_ref().ok_or("no connection")?;
        match c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => Ok(c.backend()),
            Err(e) => {
                *guard = None;
                Err(e.to_string())
            }
        }
    });
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
        Ok(Ok(Ok(backend))) => Ok(serde_json::json!({
            "backend": format!("{backend:?}").to_lowercase(),
            "ms": started.elapsed().as_secs_f64() * 1000.0,
        })),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(format!("the probe failed: {e}")),
        Err(_) => Err(format!("no answer within {STORE_PROBE_TIMEOUT:?}")),
    }
}

/// Serves `/metrics` and `/healthz` on `listen` until the task is aborted; `/healthz` probes
/// the store at `store`.
pub(super) async fn serve_http(
    listen: String,
    health: Arc<Mutex<Health>>,
    store: PathBuf,
) -> Result<tokio::task::JoinHandle<()>> {
    let probe_conn: Arc<Mutex<Option<Conn>>> = Arc::new(Mutex::new(None));
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| CoreError::Config(format!("metrics_listen {listen}: {e}")))?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                // Every set this process exposes (the stream's, and the delivery worker's when it
                // runs here too): one scrape serves them all.
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    pharmwatch_core::metrics::render_exposed(),
                )
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let h = health.lock().map(|h| h.clone()).unwrap_or_default();
                let (store, conn) = (store.clone(), probe_conn.clone());
                async move {
                    let stale = Utc::now().timestamp() - h.last_poll_unix > 60;
                    let probe = probe_store(store, conn).await;
                    let code = if stale || h.status != "ok" || h.broker == "down" || probe.is_err()
                    {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    let mut body = serde_json::to_value(&h).unwrap_or_default();
                    body["store"] = probe.unwrap_or_else(|e| serde_json::json!({ "error": e }));
                    (code, axum::Json(body))
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}
