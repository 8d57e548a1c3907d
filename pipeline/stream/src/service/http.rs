//! The service's HTTP side: `/metrics` (every metric set this process exposes) and
//! `/healthz` (not ready when the consuming loop has not polled for a minute or stopped).

use std::sync::{Arc, Mutex};

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
}

/// Serves `/metrics` and `/healthz` on `listen` until the task is aborted.
pub(super) async fn serve_http(
    listen: String,
    health: Arc<Mutex<Health>>,
) -> Result<tokio::task::JoinHandle<()>> {
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
                async move {
                    let stale = Utc::now().timestamp() - h.last_poll_unix > 60;
                    let code = if stale || h.status != "ok" {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (code, axum::Json(h))
                }
            }),
        );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}
