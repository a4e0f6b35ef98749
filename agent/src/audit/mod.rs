//! Audit sources: follow log files and turn each line into an
//! [`AuditEvent`]. Each source has a rate limit (governor); lines over it
//! are dropped and the count is sent as an `events_dropped` event. The read position is saved only after the events were
//! handed to the shipper.

pub mod authlog;
pub mod tail;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use std::num::NonZeroU32;

use driftwatch_schemas::{Asset, AuditEvent, AuditSource, Message, Outcome};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::AuditConfig;
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

/// An event saying a source dropped `count` lines to its rate limit.
pub fn dropped_event(asset: &Asset, path: &str, count: u64, line: &Line) -> AuditEvent {
    AuditEvent {
        event_id: event_id(&asset.id, &format!("{path}#dropped"), line),
        asset_id: asset.id.clone(),
        hostname: asset.hostname.clone(),
        source: AuditSource::Authlog,
        timestamp: Utc::now(),
        actor: Default::default(),
        action: "events_dropped".into(),
        object: Some(path.to_string()),
        outcome: Outcome::Unknown,
        source_address: None,
        raw: format!("{count} lines of {path} dropped by the rate limit"),
        extra: [("dropped".to_string(), count.to_string()), ("file".to_string(), path.to_string())].into(),
    }
}

/// One followed file with its rate limit.
struct Source {
    path: String,
    tailer: Tailer,
    limiter: DefaultDirectRateLimiter,
}

/// Follows the configured auth logs until the channel closes.
pub async fn run_authlog(root: &HostRoot, paths: &[String], state_dir: &Path, cfg: &AuditConfig, asset: Asset, out: mpsc::Sender<Message>) {
    let rate = NonZeroU32::new(cfg.rate_limit_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
    let mut sources: Vec<Source> = paths
        .iter()
        .map(|p| {
            let state = state_dir.join(format!("tail-{}.json", p.trim_start_matches('/').replace('/', "_")));
            Source {
                path: p.clone(),
                tailer: Tailer::new(root.path(p), Some(state), cfg.from_start),
                limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            }
        })
        .collect();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_ms));
    loop {
        tick.tick().await;
        for Source { path, tailer: t, limiter } in sources.iter_mut() {
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
            let mut dropped = 0u64;
            for line in &lines {
                if limiter.check().is_err() {
                    dropped += 1;
                    continue;
                }
                if out.send(Message::Audit(authlog_event(&asset, path, line))).await.is_err() {
                    return;
                }
            }
            if dropped > 0 {
                tracing::warn!(file = %path, dropped, "audit lines dropped by the rate limit");
                let last = lines.last().expect("lines is not empty");
                if out.send(Message::Audit(dropped_event(&asset, path, dropped, last))).await.is_err() {
                    return;
                }
            }
            if let Err(e) = t.save() {
                tracing::warn!(file = %t.path().display(), error = %e, "cannot save the audit log position");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::AssetKind;

    #[tokio::test]
    async fn floods_are_cut_to_the_rate_and_the_drop_is_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/log")).unwrap();
        let lines: String = (0..10).map(|i| format!("Nov 22 19:22:{i:02} h sshd[1]: Invalid user u{i} from 192.0.2.1 port 22\n")).collect();
        std::fs::write(d.path().join("var/log/auth.log"), lines).unwrap();
        let root = HostRoot::new(d.path());
        let cfg = AuditConfig { from_start: true, poll_ms: 50, rate_limit_per_sec: 1, burst: 3, ..AuditConfig::default() };
        let asset = Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() };
        let (tx, mut rx) = mpsc::channel(100);
        let state = d.path().to_path_buf();
        let task = tokio::spawn(async move { run_authlog(&root, &["/var/log/auth.log".into()], &state, &cfg, asset, tx).await });
        let mut got = Vec::new();
        while got.len() < 4 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(Message::Audit(e))) => got.push(e),
                other => panic!("expected events, got {other:?}"),
            }
        }
        task.abort();
        assert_eq!(got[..3].iter().map(|e| e.actor.user.clone().unwrap()).collect::<Vec<_>>(), vec!["u0", "u1", "u2"]);
        assert_eq!((got[3].action.as_str(), got[3].extra["dropped"].as_str()), ("events_dropped", "7"));
        // Ids are stable per line: a second read of the same line gets the same id.
        assert_eq!(got[0].event_id.len(), 32);
    }
}
