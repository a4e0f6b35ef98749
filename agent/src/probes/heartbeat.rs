//! The agent's heartbeat: every `heartbeat_secs`, a measurement with probe
//! id `heartbeat` on the SLA stream. The collector counts it as a sign of
//! life (an asset silent for `evaluation.unknown_after_secs` has its results
//! marked `unknown`), so a host whose configuration never changes is not
//! mistaken for a silent one between full snapshots. It carries the
//! agent's delivery health (its spool, what it dropped, when the broker last
//! acknowledged a message).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use driftwatch_schemas::{AgentHealth, Message, ProbeKind, SlaMeasurement, HEARTBEAT_PROBE_ID};
use tokio::sync::mpsc;

use crate::ship::spool::Stats;

/// The figures of `stats`, now.
pub fn health(stats: &Stats) -> AgentHealth {
    let n = |a: &std::sync::atomic::AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let last = n(&stats.last_sent_ms);
    AgentHealth {
        spool_depth: n(&stats.depth),
        spool_bytes: n(&stats.bytes),
        dropped: n(&stats.dropped),
        last_sent: (last > 0).then(|| chrono::Utc.timestamp_millis_opt(last).single()).flatten(),
    }
}

/// One heartbeat of `asset_id`, now.
pub fn beat(asset_id: &str, stats: &Stats) -> SlaMeasurement {
    let mut m = super::Started::now().measured(asset_id, HEARTBEAT_PROBE_ID, "agent", ProbeKind::Host, None);
    m.latency_us = 0;
    m.agent_health = Some(health(stats));
    m
}

/// Sends a heartbeat every `every` until the channel closes.
pub async fn run(asset_id: String, every: Duration, stats: Arc<Stats>, out: mpsc::Sender<Message>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if out.send(Message::Sla(beat(&asset_id, &stats))).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_heartbeat_is_a_host_measurement_with_the_reserved_id() {
        let stats = super::Stats::default();
        stats.depth.store(3, super::Ordering::Relaxed);
        let b = super::beat("a", &stats);
        assert_eq!((b.probe_id.as_str(), b.kind, b.success), ("heartbeat", driftwatch_schemas::ProbeKind::Host, true));
        let h = b.agent_health.unwrap();
        assert_eq!((h.spool_depth, h.dropped, h.last_sent), (3, 0, None));
    }
}
