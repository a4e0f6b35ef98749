//! SLA probes: each runs on its own interval (plus jitter, so that a fleet's
//! probes do not fire in step) and yields a measurement, success or not,
//! with the latency as measured and, on failure, the error's category
//! first: HTTP(S) ([`http`]), TCP connect and DNS resolution ([`net`]),
//! host metrics ([`host`]); and the agent's [`heartbeat`].

pub mod config;
pub mod heartbeat;
pub mod host;
pub mod http;
pub mod net;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use driftwatch_schemas::{Message, ProbeKind as Kind, SlaMeasurement};
use rand::Rng;
use tokio::sync::mpsc;

pub use config::{ProbeConfig, ProbeKind};

/// When a measurement started, by the wall clock (its timestamp) and the
/// monotonic one (its latency).
pub(crate) struct Started(DateTime<Utc>, Instant);

impl Started {
    pub(crate) fn now() -> Started {
        Started(Utc::now(), Instant::now())
    }

    /// The measurement, its latency taken now; successful when `error` is none.
    pub(crate) fn measured(&self, asset_id: &str, probe_id: &str, target: &str, kind: Kind, error: Option<String>) -> SlaMeasurement {
        SlaMeasurement {
            asset_id: asset_id.to_string(),
            probe_id: probe_id.to_string(),
            target: target.to_string(),
            kind,
            timestamp: self.0,
            success: error.is_none(),
            latency_us: self.1.elapsed().as_micros().min(i64::MAX as u128) as i64,
            status_code: None,
            error,
            host_metrics: None,
            cert_days_left: None,
            agent_health: None,
        }
    }
}

/// A probe ready to run: what it needs between runs.
enum Runner {
    Http(Box<http::HttpProbe>),
    Tcp,
    Dns,
    Host(Box<host::HostSampler>),
}

/// Runs one probe forever (until the channel closes): the first run after
/// a random part of the jitter, then every interval plus a random part of
/// the jitter.
pub async fn run(asset_id: String, probe: ProbeConfig, out: mpsc::Sender<Message>) {
    let mut runner = match probe.kind {
        ProbeKind::Http => match http::HttpProbe::new(&probe) {
            Ok(p) => Runner::Http(Box::new(p)),
            Err(e) => {
                tracing::error!(probe = %probe.id, error = %e, "cannot set up the HTTP probe; probe disabled");
                return;
            }
        },
        ProbeKind::Tcp => Runner::Tcp,
        ProbeKind::Dns => Runner::Dns,
        ProbeKind::Host => Runner::Host(Box::default()),
    };
    let interval = Duration::from_secs(probe.interval_secs);
    let jitter = probe.jitter();
    let timeout = Duration::from_millis(probe.timeout_ms);
    let target = probe.target.as_deref().unwrap_or_default();
    tokio::time::sleep(random_up_to(jitter)).await;
    loop {
        let m = match &mut runner {
            Runner::Http(p) => p.probe(&asset_id, &probe.id).await,
            Runner::Tcp => net::tcp(&asset_id, &probe.id, target, timeout).await,
            Runner::Dns => net::dns(&asset_id, &probe.id, target, timeout).await,
            Runner::Host(s) => s.sample(&asset_id, &probe.id),
        };
        if out.send(Message::Sla(m)).await.is_err() {
            return;
        }
        tokio::time::sleep(interval + random_up_to(jitter)).await;
    }
}

fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    Duration::from_millis(rand::rng().random_range(0..=max.as_millis().min(u64::MAX as u128) as u64))
}
