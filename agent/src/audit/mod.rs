//! Audit sources: follow log files and turn each line into an
//! [`AuditEvent`]. The read position is saved only after the events were
//! handed to the shipper.

pub mod authlog;
pub mod tail;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use driftwatch_schemas::{Asset, AuditEvent, AuditSource, Message};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::root::HostRoot;
use tail::{Line, Tailer};

/// A stable event id: the same line of the same file always gets the same
/// id, so a re-sent event is recognisable downstream.
pub fn event_id(asset_id: &str, path: &str, line: &Line) -> String {
    let mut h = Sha256::new();
    h.update(asset_id.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update(line.inode.to_le_bytes());
    h.update(line.offset.to_le_bytes());
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns one auth log line into an event.
pub fn authlog_event(asset: &Asset, path: &str, line: &Line) -> AuditEvent {
    let now = Utc::now();
    let p = authlog::parse(&line.text, now);
    let mut extra = p.extra;
    extra.insert("file".into(), path.to_string());
    if line.truncated {
        extra.insert("truncated".into(), "true".into());
    }
    AuditEvent {
        event_id: event_id(&asset.id, path, line),
        asset_id: asset.id.clone(),
        hostname: asset.hostname.clone(),
        source: AuditSource::Authlog,
        timestamp: p.timestamp.unwrap_or(now),
        actor: p.actor,
        action: p.action,
        object: p.object,
        outcome: p.outcome,
        source_address: p.source_address,
        raw: line.text.clone(),
        extra,
    }
}

/// Follows the configured auth logs until the channel closes.
pub async fn run_authlog(
    root: &HostRoot,
    paths: &[String],
    state_dir: &Path,
    from_start: bool,
    poll: Duration,
    asset: Asset,
    out: mpsc::Sender<Message>,
) {
    let mut tailers: Vec<(String, Tailer)> = paths
        .iter()
        .map(|p| {
            let state = state_dir.join(format!("tail-{}.json", p.trim_start_matches('/').replace('/', "_")));
            (p.clone(), Tailer::new(root.path(p), Some(state), from_start))
        })
        .collect();
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        for (path, t) in tailers.iter_mut() {
            let lines = match t.poll() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(file = %t.path().display(), error = %e, "cannot read audit log");
                    continue;
                }
            };
            if lines.is_empty() {
                continue;
            }
            for line in &lines {
                if out.send(Message::Audit(authlog_event(&asset, path, line))).await.is_err() {
                    return;
                }
            }
            if let Err(e) = t.save() {
                tracing::warn!(file = %t.path().display(), error = %e, "cannot save the audit log position");
            }
        }
    }
}
