//! SLA probes: each runs on its own interval and yields a measurement,
//! success or not, with the latency as measured: HTTP(S) ([`http`]), TCP
//! connect and DNS resolution ([`net`]); and the agent's [`heartbeat`].

pub mod heartbeat;
pub mod http;
pub mod net;

use std::time::Duration;

use driftwatch_schemas::Message;
use tokio::sync::mpsc;

use crate::config::{ProbeConfig, ProbeKind};

/// Runs one probe forever (until the channel closes).
pub async fn run(asset_id: String, probe: ProbeConfig, out: mpsc::Sender<Message>) {
    let client = match http::client(Duration::from_millis(probe.timeout_ms)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(probe = %probe.id, error = %e, "cannot build the HTTP client; probe disabled");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(probe.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let timeout = Duration::from_millis(probe.timeout_ms);
        let target = probe.target.as_deref().unwrap_or_default();
        let m = match probe.kind {
            ProbeKind::Http => {
                http::probe(&client, &asset_id, &probe.id, probe.url.as_deref().unwrap_or_default(), probe.expect_status).await
            }
            ProbeKind::Tcp => net::tcp(&asset_id, &probe.id, target, timeout).await,
            ProbeKind::Dns => net::dns(&asset_id, &probe.id, target, timeout).await,
        };
        if out.send(Message::Sla(m)).await.is_err() {
            return;
        }
    }
}
