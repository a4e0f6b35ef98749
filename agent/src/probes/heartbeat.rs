//! The agent's heartbeat: every `heartbeat_secs`, a measurement with probe
//! id `heartbeat` on the SLA stream. The collector counts it as a sign of
//! life (an asset silent for `evaluation.unknown_after_secs` has its results
//! marked `unknown`), so a host whose configuration never changes is not
//! mistaken for a silent one between full snapshots.

use std::time::Duration;

use driftwatch_schemas::{Message, ProbeKind, SlaMeasurement, HEARTBEAT_PROBE_ID};
use tokio::sync::mpsc;

/// One heartbeat of `asset_id`, now.
pub fn beat(asset_id: &str) -> SlaMeasurement {
    SlaMeasurement {
        asset_id: asset_id.to_string(),
        probe_id: HEARTBEAT_PROBE_ID.into(),
        target: "agent".into(),
        kind: ProbeKind::Host,
        timestamp: chrono::Utc::now(),
        success: true,
        latency_us: 0,
        status_code: None,
        error: None,
        host_metrics: None,
    }
}

/// Sends a heartbeat every `every` until the channel closes.
pub async fn run(asset_id: String, every: Duration, out: mpsc::Sender<Message>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if out.send(Message::Sla(beat(&asset_id))).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_heartbeat_is_a_host_measurement_with_the_reserved_id() {
        let b = super::beat("a");
        assert_eq!((b.probe_id.as_str(), b.kind, b.success), ("heartbeat", driftwatch_schemas::ProbeKind::Host, true));
    }
}
