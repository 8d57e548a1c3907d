//! The delivery worker's metrics: attempts and outcomes by channel, deliveries accepted and
//! failed, rows pending and the time of a send. Every channel × outcome starts at zero.

use std::sync::OnceLock;

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use pharmwatch_core::metrics::{Builder, CHANNELS, Family, OUTCOMES, expose, render};

/// The delivery worker's metrics (`pharmwatch deliver`, and the worker inside `stream` and
/// `serve`). Labels: `channel` is one of [`CHANNELS`]; `outcome` of an attempt is one of
/// [`OUTCOMES`].
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// The registry they live in.
    pub registry: Registry,
    /// Send attempts, by channel and outcome.
    pub attempts: IntCounterVec,
    /// Deliveries that reached the receiver, by channel.
    pub delivered: IntCounterVec,
    /// Deliveries marked failed after their last attempt, by channel.
    pub failed: IntCounterVec,
    /// Deliveries waiting to be sent (due now or later), by channel.
    pub pending: IntGaugeVec,
    /// Time of one send attempt, seconds, by channel.
    pub attempt_seconds: HistogramVec,
    /// The families above (for `pharmwatch::metrics::defined`).
    pub families: Vec<Family>,
}

impl DeliveryMetrics {
    /// Creates and registers every delivery metric, every channel × outcome at zero.
    pub fn new() -> Self {
        let mut b = Builder::new();
        let attempts = b.counter(
            "pharmwatch_delivery_attempts_total",
            "Delivery send attempts, by channel and outcome (success, retry, final_failure).",
            &["channel", "outcome"],
        );
        let delivered = b.counter(
            "pharmwatch_delivery_delivered_total",
            "Deliveries accepted by the receiver, by channel.",
            &["channel"],
        );
        let failed = b.counter(
            "pharmwatch_delivery_failed_total",
            "Deliveries marked failed after their last attempt, by channel.",
            &["channel"],
        );
        let pending = b.gauge(
            "pharmwatch_delivery_pending",
            "Deliveries waiting to be sent, by channel.",
            &["channel"],
        );
        let attempt_seconds = b.histogram(
            "pharmwatch_delivery_attempt_seconds",
            "Time of one send attempt, seconds, by channel.",
            &["channel"],
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        );
        for c in CHANNELS {
            for o in OUTCOMES {
                attempts.with_label_values(&[*c, *o]);
            }
            delivered.with_label_values(&[*c]);
            failed.with_label_values(&[*c]);
            pending.with_label_values(&[*c]);
            attempt_seconds.with_label_values(&[*c]);
        }
        Self {
            registry: b.registry,
            attempts,
            delivered,
            failed,
            pending,
            attempt_seconds,
            families: b.families,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        render(&[&self.registry])
    }
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide delivery metrics.
pub fn delivery() -> &'static DeliveryMetrics {
    static M: OnceLock<DeliveryMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = DeliveryMetrics::new();
        expose(&m.registry);
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_metrics_render_every_channel_and_outcome() {
        let m = DeliveryMetrics::new();
        m.attempts.with_label_values(&["webhook", "retry"]).inc();
        m.pending.with_label_values(&["email"]).set(3);
        let text = m.render();
        assert!(
            text.contains(
                "pharmwatch_delivery_attempts_total{channel=\"webhook\",outcome=\"retry\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("pharmwatch_delivery_pending{channel=\"email\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "pharmwatch_delivery_attempts_total{channel=\"dingtalk\",outcome=\"final_failure\"} 0"
            ),
            "{text}"
        );
    }
}
