//! The collector's metrics, in one Prometheus registry served at
//! `/metrics`: records consumed per topic and outcome, batches and rows
//! stored and how long storing took, evaluation time, and notifications per
//! receiver and outcome. Delivery failures are counted here as well as
//! logged: never silent.

use std::sync::LazyLock;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    /// `topic`, `outcome` (`decoded`, `dead_lettered`).
    pub records: IntCounterVec,
    pub batches_stored: IntCounter,
    pub rows_stored: IntCounter,
    pub store_seconds: Histogram,
    pub evaluate_seconds: Histogram,
    /// `receiver`, `outcome` (`delivered`, `failed`, `retried`).
    pub notifications: IntCounterVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

/// The process's metrics (definitions are static; registering cannot fail
/// but on a programming error, caught by the tests).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new_custom(Some("driftwatch".into()), None).expect("registry");
    Metrics {
        records: counter_vec(&r, "records_total", "Kafka records consumed, by topic and outcome.", &["topic", "outcome"]),
        batches_stored: counter(&r, "batches_stored_total", "Batches written to ClickHouse."),
        rows_stored: counter(&r, "rows_stored_total", "Rows written to ClickHouse."),
        store_seconds: histogram(
            &r,
            "store_seconds",
            "Time to write a batch to ClickHouse, retries included.",
            vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0],
        ),
        evaluate_seconds: histogram(
            &r,
            "evaluate_seconds",
            "Time to apply and evaluate one snapshot.",
            vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
        ),
        notifications: counter_vec(&r, "notifications_total", "Alert notifications, by receiver and outcome.", &["receiver", "outcome"]),
        registry: r,
    }
});

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    // Families without samples yet (a counter vector before its first
    // label set) are left out: the encoder refuses them.
    let families: Vec<_> = METRICS.registry.gather().into_iter().filter(|f| !f.get_metric().is_empty()).collect();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_render_before_any_label_set_is_used() {
        assert!(super::render().contains("driftwatch_batches_stored_total"));
    }

    #[test]
    fn metrics_register_and_render() {
        super::METRICS.notifications.with_label_values(&["slack", "failed"]).inc();
        let text = super::render();
        assert!(text.contains(r#"driftwatch_notifications_total{outcome="failed",receiver="slack"} 1"#), "{text}");
        assert!(text.contains("driftwatch_store_seconds_bucket"));
    }
}
