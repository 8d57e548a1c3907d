//! Serve's metrics: notices acknowledged (送达) through their signed link, by document kind
//! (every kind starts at zero). The name keeps the delivery prefix: an acknowledgement ends a
//! delivery, and the dashboards read it beside the delivery worker's.

use std::sync::OnceLock;

use prometheus::{IntCounterVec, Registry};

use pharmwatch_core::metrics::{Builder, DOCUMENT_KINDS, Family, expose, render};

/// Serve's metrics.
#[derive(Debug, Clone)]
pub struct ServeMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Notices acknowledged (送达) through their signed link, by document kind.
    pub acknowledged: IntCounterVec,
    /// The families above (for `pharmwatch::metrics::defined`).
    pub families: Vec<Family>,
}

impl ServeMetrics {
    /// Creates and registers serve's metrics.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let acknowledged = b.counter(
            "pharmwatch_delivery_acknowledged_total",
            "Notices acknowledged (送达) through their signed link, by document kind.",
            &["kind"],
        );
        for k in DOCUMENT_KINDS {
            acknowledged.with_label_values(&[*k]);
        }
        Self {
            registry: b.registry,
            acknowledged,
            families: b.families,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }
}

impl Default for ServeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide serve metrics (exposed on the process's `/metrics`).
pub fn serve() -> &'static ServeMetrics {
    static M: OnceLock<ServeMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = ServeMetrics::new();
        expose(&m.registry);
        m
    })
}
