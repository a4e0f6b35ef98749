//! The collector's metrics, in one Prometheus registry served at
//! `/metrics`: records consumed per topic and outcome, how old a record
//! is when received, how long a batch waits for its write, batches and rows
//! stored and how long storing took, evaluation time, notifications per
//! receiver and outcome and how long delivering one took, consumer lag per
//! partition, and — on the collector
//! running fleet-wide work (`driftwatch_leader` 1) — compliance scores per
//! framework and open violations per severity; the build
//! (`driftwatch_build_info`) and the process's own `process_*` metrics.
//! Delivery failures are counted here as well as logged: never silent.

use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// `topic`, `outcome` (`decoded`, `dead_lettered`).
    pub records: IntCounterVec,
    /// `topic`: records decoded whose header names the writer schema by
    /// its pre-specification fingerprint (agents from before; still read).
    pub legacy_fingerprint_records: IntCounterVec,
    pub schema_registry_requests: IntCounterVec,
    /// `topic`, `limit`: records dead-lettered for breaking a limit.
    pub limit_violations: IntCounterVec,
    /// `topic`: records whose own time was far from their receipt, stored
    /// at their receipt.
    pub clock_skew_records: IntCounterVec,
    /// `reason` (`too_large`, `permanent`, `gave_up`): dead letters that
    /// could not be written whole or at all (the original was still
    /// skipped past: one record never stops a partition).
    pub dead_letter_failures: IntCounterVec,
    /// `outcome`: records by what their signature showed (`signed`,
    /// `pinned_first_use`, `unsigned_accepted`, or `rejected_<concern>`).
    pub identity_records: IntCounterVec,
    /// Keys recorded as pending (waiting for an operator), as last read.
    pub agent_keys_pending: prometheus::IntGauge,
    /// Assets whose facts the engine holds.
    pub assets_held: prometheus::IntGauge,
    /// Assets whose results became unknown because they went silent.
    pub assets_gone_silent: IntCounter,
    /// What the last check of the evidence chains' links and roots (two
    /// days, on the leader) found wrong; 0 when they hold.
    pub evidence_findings: prometheus::IntGauge,
    /// 1 while consumption is paused at the memory ceiling.
    pub consumption_paused: prometheus::IntGauge,
    /// API connections closed at accept: `api.max_connections` were open.
    pub api_connections_refused: IntCounter,
    /// API requests answered 429 (per client address or per key).
    pub api_rate_limited: IntCounter,
    pub batches_stored: IntCounter,
    /// `fault`: failed batch writes, by what the failure said: `transient`
    /// (retried), `refused` (the batch split to find whose rows),
    /// `systemic` (the store refused rows it took before: waited for).
    pub store_write_failures: IntCounterVec,
    /// Records whose rows the store refused, sent to the dead-letter topic.
    pub store_refused_records: IntCounter,
    /// Rows the collector derived on its own that the store refused (a
    /// defect: logged and dropped rather than retried forever).
    pub store_dropped_rows: IntCounter,
    pub rows_stored: IntCounter,
    /// From a Kafka record's timestamp to its receipt.
    pub record_age_seconds: Histogram,
    /// From a batch's first record to the start of its write.
    pub batch_wait_seconds: Histogram,
    pub store_seconds: Histogram,
    /// The consumer loop waiting for the batch in flight to be stored
    /// before it could put the next one in flight: the store's back-pressure.
    pub store_wait_seconds: Histogram,
    pub evaluate_seconds: Histogram,
    /// `receiver`, `outcome` (`delivered`, `failed`, `retried`).
    pub notifications: IntCounterVec,
    /// `receiver`: delivering one notification, retries included.
    pub notification_seconds: HistogramVec,
    /// `topic`, `partition`: messages not yet consumed.
    pub consumer_lag: IntGaugeVec,
    /// `framework`, `waivers` (`honoured`, `ignored`): fleet score, 0–100.
    pub compliance_score: GaugeVec,
    /// `framework`: share of its catalog's requirements with evidence, 0–100.
    pub compliance_coverage: GaugeVec,
    pub compliance_requirements: IntGaugeVec,
    /// `severity`.
    pub open_violations: IntGaugeVec,
    /// 1 while this collector runs the fleet-wide work (it owns partition 0
    /// of the SLA topic, or runs standalone); the fleet gauges above are
    /// only set on it, and cleared when it stops.
    pub leader: prometheus::IntGauge,
    /// Always 1, labelled with the build: `version`, `os`, `arch`.
    pub build_info: IntGaugeVec,
}

/// Records whether this collector runs the fleet-wide work. A collector
/// that stops doing so clears its fleet gauges (scores, coverage, open
/// violations), so that only the leader's are scraped rather than a
/// follower's frozen ones.
pub fn leadership(leading: bool) {
    let m = &*METRICS;
    m.leader.set(i64::from(leading));
    if !leading {
        m.compliance_score.reset();
        m.compliance_coverage.reset();
        m.compliance_requirements.reset();
        m.open_violations.reset();
    }
}

/// The process's own metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`,
/// `process_start_time_seconds`…), under their standard names (without
/// the `driftwatch_` prefix), as Prometheus's client libraries export them.
static PROCESS: LazyLock<Registry> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    if let Err(e) = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())) {
        tracing::warn!(error = %e, "process metrics are not available");
    }
    r
});

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

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

/// Latency buckets, 5 ms to 30 s.
fn latency() -> Vec<f64> {
    vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0]
}

/// The process's metrics (definitions are static; registering cannot fail
/// but on a programming error, caught by the tests).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new_custom(Some("driftwatch".into()), None).expect("registry");
    Metrics {
        records: counter_vec(&r, "records_total", "Kafka records consumed, by topic and outcome.", &["topic", "outcome"]),
        legacy_fingerprint_records: counter_vec(
            &r,
            "legacy_fingerprint_records_total",
            "Records decoded whose header names the writer schema by Driftwatch's pre-specification fingerprint (an agent to upgrade), by topic.",
            &["topic"],
        ),
        schema_registry_requests: counter_vec(
            &r,
            "schema_registry_requests_total",
            "Writer schemas asked of the schema registry for records in Confluent's wire format, by outcome (fetched, refused, unreachable).",
            &["outcome"],
        ),
        limit_violations: counter_vec(
            &r,
            "limit_violations_total",
            "Records dead-lettered for breaking a limit (limits.*), by topic and limit.",
            &["topic", "limit"],
        ),
        clock_skew_records: counter_vec(
            &r,
            "clock_skew_records_total",
            "Records whose own time was more than 7 days before or 10 minutes after their receipt; stored at their receipt.",
            &["topic"],
        ),
        dead_letter_failures: counter_vec(
            &r,
            "dead_letter_failures_total",
            "Dead letters truncated (too_large), or not written (permanent: the topic refused it; gave_up: retries ran out).",
            &["reason"],
        ),
        identity_records: counter_vec(
            &r,
            "identity_records_total",
            "Records by what their signature showed: signed (by the pinned key), pinned_first_use, unsigned_accepted, or rejected_<why>.",
            &["outcome"],
        ),
        agent_keys_pending: {
            let g = prometheus::IntGauge::new("agent_keys_pending", "Agent keys waiting for an operator's approval (driftwatch-collector keys list --status pending).")
                .expect("metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        },
        assets_held: {
            let g = prometheus::IntGauge::new("assets_held", "Assets whose facts the collector holds (idle ones are let go after evaluation.evict_after_secs).")
                .expect("metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        },
        assets_gone_silent: counter(
            &r,
            "assets_gone_silent_total",
            "Assets whose results became unknown because they sent nothing for evaluation.unknown_after_secs.",
        ),
        evidence_findings: {
            let g = prometheus::IntGauge::new(
                "evidence_findings",
                "Problems the leader's last check of the evidence chains' links and roots found (links altered, chains broken, links missing, roots not matching); 0 when they hold.",
            )
            .expect("metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        },
        consumption_paused: {
            let g = prometheus::IntGauge::new("consumption_paused", "1 while consumption is paused at the memory ceiling (evaluation.memory_limit_mb).")
                .expect("metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        },
        api_connections_refused: counter(&r, "api_connections_refused_total", "API connections closed at accept: api.max_connections were open."),
        api_rate_limited: counter(&r, "api_rate_limited_total", "API requests answered 429 (per client address or per key)."),
        batches_stored: counter(&r, "batches_stored_total", "Batches written to ClickHouse."),
        store_write_failures: counter_vec(
            &r,
            "store_write_failures_total",
            "Failed batch writes: transient (retried), refused (split to find the records), systemic (the store refused rows it took before).",
            &["fault"],
        ),
        store_refused_records: counter(&r, "store_refused_records_total", "Records whose rows the store refused, dead-lettered."),
        store_dropped_rows: counter(&r, "store_dropped_rows_total", "Rows of no record (the collector's own) that the store refused, dropped."),
        rows_stored: counter(&r, "rows_stored_total", "Rows written to ClickHouse."),
        record_age_seconds: histogram(
            &r,
            "record_age_seconds",
            "Age of a Kafka record when the collector received it (its timestamp to now).",
            vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0, 3600.0],
        ),
        batch_wait_seconds: histogram(
            &r,
            "batch_wait_seconds",
            "From a batch's first record to the start of its write (filling, and the write of the batch before).",
            latency(),
        ),
        store_seconds: histogram(&r, "store_seconds", "Time to write a batch's rows, retries included.", latency()),
        store_wait_seconds: histogram(
            &r,
            "store_wait_seconds",
            "Time the consumer loop waited for the batch being stored before it could store the next (the store's back-pressure).",
            latency(),
        ),
        evaluate_seconds: histogram(
            &r,
            "evaluate_seconds",
            "Time to apply and evaluate one snapshot.",
            vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
        ),
        notifications: counter_vec(&r, "notifications_total", "Alert notifications, by receiver and outcome.", &["receiver", "outcome"]),
        notification_seconds: histogram_vec(
            &r,
            "notification_seconds",
            "Time to deliver one notification (or give up), retries included, by receiver.",
            &["receiver"],
            latency(),
        ),
        consumer_lag: int_gauge_vec(&r, "consumer_lag", "Messages not yet consumed, by topic and partition.", &["topic", "partition"]),
        compliance_score: gauge_vec(
            &r,
            "compliance_score",
            "Fleet compliance score per framework (0-100), with waivers honoured or ignored.",
            &["framework", "waivers"],
        ),
        compliance_coverage: gauge_vec(
            &r,
            "compliance_coverage",
            "Share of each framework's catalog requirements with evidence in the fleet (0-100); the rest are not assessed.",
            &["framework"],
        ),
        compliance_requirements: int_gauge_vec(
            &r,
            "compliance_requirements",
            "Each framework's catalog requirements by the evidence they have in the fleet: automated, attested (only), not_assessed.",
            &["framework", "evidence"],
        ),
        open_violations: int_gauge_vec(&r, "open_violations", "Open violations by severity.", &["severity"]),
        leader: {
            let g = prometheus::IntGauge::new("leader", "1 while this collector runs the fleet-wide work (scores, SLOs, reports); its fleet gauges are the ones to read.")
                .expect("metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g
        },
        build_info: {
            let g = int_gauge_vec(&r, "build_info", "Always 1: the collector's version, OS and architecture.", &["version", "os", "arch"]);
            g.with_label_values(&[env!("CARGO_PKG_VERSION"), std::env::consts::OS, std::env::consts::ARCH]).set(1);
            g
        },
        registry: r,
    }
});

/// The name of every metric family the collector exports, with or without
/// samples yet (what alerting rules may read).
pub fn family_names() -> Vec<String> {
    use prometheus::core::Collector;
    let m = &*METRICS;
    let all: [&dyn Collector; 33] = [
        &m.records,
        &m.legacy_fingerprint_records,
        &m.schema_registry_requests,
        &m.limit_violations,
        &m.clock_skew_records,
        &m.dead_letter_failures,
        &m.identity_records,
        &m.agent_keys_pending,
        &m.assets_held,
        &m.assets_gone_silent,
        &m.evidence_findings,
        &m.consumption_paused,
        &m.api_connections_refused,
        &m.api_rate_limited,
        &m.batches_stored,
        &m.store_write_failures,
        &m.store_refused_records,
        &m.store_dropped_rows,
        &m.rows_stored,
        &m.record_age_seconds,
        &m.batch_wait_seconds,
        &m.store_seconds,
        &m.store_wait_seconds,
        &m.evaluate_seconds,
        &m.notifications,
        &m.notification_seconds,
        &m.consumer_lag,
        &m.compliance_score,
        &m.compliance_coverage,
        &m.compliance_requirements,
        &m.open_violations,
        &m.leader,
        &m.build_info,
    ];
    // The registry's prefix is added as it gathers; a vector without a
    // label set yet gathers nothing, so the names come from the
    // definitions.
    let mut names: Vec<String> = all.iter().flat_map(|c| c.desc()).map(|d| format!("driftwatch_{}", d.fq_name)).collect();
    names.extend(PROCESS.gather().iter().map(|f| f.name().to_string()));
    names.sort();
    names.dedup();
    names
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    // Families without samples yet (a counter vector before its first
    // label set) are left out: the encoder refuses them.
    let families: Vec<_> = METRICS.registry.gather().into_iter().chain(PROCESS.gather()).filter(|f| !f.get_metric().is_empty()).collect();
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
    fn build_and_process_metrics_are_exported() {
        let text = super::render();
        assert!(text.contains(&format!("driftwatch_build_info{{arch=\"{}\"", std::env::consts::ARCH)), "{text}");
        assert!(text.contains("driftwatch_leader "), "{text}");
        #[cfg(target_os = "linux")]
        for m in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds ", "process_start_time_seconds "] {
            assert!(text.lines().any(|l| l.starts_with(m)), "{m} in {text}");
        }
    }

    /// A collector that stops leading clears the fleet gauges it set.
    #[test]
    fn losing_leadership_clears_the_fleet_gauges() {
        let m = &*super::METRICS;
        super::leadership(true);
        m.compliance_score.with_label_values(&["soc2", "honoured"]).set(93.0);
        m.open_violations.with_label_values(&["high"]).set(4);
        let text = super::render();
        assert!(text.contains("driftwatch_leader 1") && text.contains("driftwatch_compliance_score{"), "{text}");
        super::leadership(false);
        let text = super::render();
        assert!(text.contains("driftwatch_leader 0"), "{text}");
        assert!(!text.contains("driftwatch_compliance_score{") && !text.contains("driftwatch_open_violations{"), "{text}");
    }

    /// Every family rendered is one `family_names` lists (so the list
    /// the alerting rules are checked against keeps up with the fields).
    #[test]
    fn family_names_list_every_metric() {
        let m = &*super::METRICS;
        m.records.with_label_values(&["t", "decoded"]).inc();
        m.consumer_lag.with_label_values(&["t", "0"]).set(1);
        let names = super::family_names();
        for line in super::render().lines().filter_map(|l| l.strip_prefix("# HELP ")) {
            let name = line.split(' ').next().unwrap();
            assert!(names.iter().any(|n| n == name), "{name} is not in family_names: {names:?}");
        }
        assert!(names.iter().any(|n| n == "driftwatch_compliance_score"), "{names:?}");
    }

    #[test]
    fn metrics_register_and_render() {
        super::METRICS.notifications.with_label_values(&["slack", "failed"]).inc();
        let text = super::render();
        assert!(text.contains(r#"driftwatch_notifications_total{outcome="failed",receiver="slack"} 1"#), "{text}");
        assert!(text.contains("driftwatch_store_seconds_bucket"));
    }
}
