//! Audit sources: follow log files and turn each line into an
//! [`AuditEvent`]. Each source has a rate limit (governor); lines over it
//! are dropped and the count is sent as an `events_dropped` event. The read position is saved only after the events were
//! handed to the shipper.

pub mod auditd;
pub mod authlog;
pub mod config;
pub mod journald;
pub mod k8s;
pub mod tail;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use std::num::NonZeroU32;

use driftwatch_schemas::{Asset, AuditEvent, AuditSource, Message, Outcome};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::root::HostRoot;
pub use config::AuditConfig;
use tail::{Line, Tailer};

/// A stable event id: the same line of the same file always gets the same
/// id, so a re-sent event is recognisable downstream.
pub fn event_id(asset_id: &str, path: &str, line: &Line) -> String {
    stable_id(&[asset_id, path, &line.inode.to_string(), &line.offset.to_string()])
}

/// 128 bits of SHA-256 over the parts, as hex: an id that is the same
/// every time the same thing is read.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an event from a parsed line or record group of a file.
fn event(asset: &Asset, path: &str, source: AuditSource, first: &Line, truncated: bool, mut p: authlog::Parsed, raw: String) -> AuditEvent {
    p.extra.insert("file".into(), path.to_string());
    if truncated {
        p.extra.insert("truncated".into(), "true".into());
    }
    build_event(asset, event_id(&asset.id, path, first), source, p, raw)
}

/// Builds an event from what a parser found; every source ends here.
pub fn build_event(asset: &Asset, event_id: String, source: AuditSource, p: authlog::Parsed, raw: String) -> AuditEvent {
    AuditEvent {
        event_id,
        asset_id: asset.id.clone(),
        hostname: asset.hostname.clone(),
        source,
        timestamp: p.timestamp.unwrap_or_else(Utc::now),
        actor: p.actor,
        action: p.action,
        object: p.object,
        outcome: p.outcome,
        source_address: p.source_address,
        raw,
        extra: p.extra,
    }
}

/// Turns one auth log line into an event.
pub fn authlog_event(asset: &Asset, path: &str, line: &Line) -> AuditEvent {
    event(asset, path, AuditSource::Authlog, line, line.truncated, authlog::parse(&line.text, Utc::now()), line.text.clone())
}

/// Turns one Kubernetes API audit line into an event.
pub fn k8s_event(asset: &Asset, path: &str, line: &Line) -> AuditEvent {
    event(asset, path, AuditSource::K8sAudit, line, line.truncated, k8s::parse(&line.text), line.text.clone())
}

/// Turns one auditd record group into an event.
pub fn auditd_event(asset: &Asset, path: &str, group: &auditd::Group, users: &auditd::Users) -> AuditEvent {
    event(asset, path, AuditSource::Auditd, &group.first, group.first.truncated, auditd::to_event(group, users), group.raw.join("\n"))
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

/// How a followed file is parsed.
enum Parser {
    Authlog,
    K8sAudit,
    /// Records wait here until their event is complete.
    Auditd(auditd::Assembler),
}

/// One followed file with its parser and rate limit.
struct Source {
    path: String,
    parser: Parser,
    tailer: Tailer,
    limiter: DefaultDirectRateLimiter,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows the configured auth logs and audit logs until the channel
/// closes (or this task is aborted, which stops the journal reader too).
pub async fn run(root: &HostRoot, state_dir: &Path, cfg: &AuditConfig, asset: Asset, out: mpsc::Sender<Message>) {
    let rate = NonZeroU32::new(cfg.rate_limit_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
    let source = |p: &String, parser: Parser| {
        let state = state_dir.join(format!("tail-{}.json", p.trim_start_matches('/').replace('/', "_")));
        Source {
            path: p.clone(),
            parser,
            tailer: Tailer::new(root.path(p), Some(state), cfg.from_start),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    };
    let mut sources: Vec<Source> = cfg
        .authlog
        .iter()
        .map(|p| source(p, Parser::Authlog))
        .chain(cfg.auditd.iter().map(|p| source(p, Parser::Auditd(auditd::Assembler::default()))))
        .chain(cfg.k8s_audit.iter().map(|p| source(p, Parser::K8sAudit)))
        .collect();
    // Stops with this task: the journal reader holds a sender of the
    // agent's queue, which must close for the agent to shut down.
    let _journal = journald::should_run(&cfg.journald, root, &cfg.authlog).then(|| {
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
        let (jcfg, out, asset, from_start) = (cfg.journald.clone(), out.clone(), asset.clone(), cfg.from_start);
        let (root_dir, state) = (root.root().to_path_buf(), state_dir.to_path_buf());
        let task = tokio::spawn(async move {
            let root = HostRoot::new(root_dir);
            journald::run(&jcfg, &root, &state, from_start, &limiter, &asset, &out).await
        });
        AbortOnDrop(task)
    });
    let mut users = auditd::Users::new();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_ms));
    loop {
        tick.tick().await;
        for Source { path, parser, tailer: t, limiter } in sources.iter_mut() {
            let lines = match t.poll() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(file = %t.path().display(), error = %e, "cannot read audit log");
                    continue;
                }
            };
            let events: Vec<AuditEvent> = match parser {
                Parser::Authlog => lines.iter().map(|l| authlog_event(&asset, path, l)).collect(),
                // Only the final stage of each request: earlier stages repeat it.
                Parser::K8sAudit => lines.iter().filter(|l| k8s::is_final(&l.text)).map(|l| k8s_event(&asset, path, l)).collect(),
                Parser::Auditd(asm) => {
                    let mut groups: Vec<auditd::Group> = lines.iter().flat_map(|l| asm.push(l)).collect();
                    // A quiet poll ends the event in progress.
                    if lines.is_empty() {
                        groups.extend(asm.flush());
                    }
                    if !groups.is_empty() {
                        if let Ok(Some(text)) = root.read_to_string("/etc/passwd") {
                            users = auditd::users_from_passwd(&text);
                        }
                    }
                    groups.iter().map(|g| auditd_event(&asset, path, g, &users)).collect()
                }
            };
            if events.is_empty() && lines.is_empty() {
                continue;
            }
            let mut dropped = 0u64;
            for e in events {
                if limiter.check().is_err() {
                    dropped += 1;
                    continue;
                }
                if out.send(Message::Audit(e)).await.is_err() {
                    return;
                }
            }
            if dropped > 0 {
                tracing::warn!(file = %path, dropped, "audit events dropped by the rate limit");
                let at = lines.last().cloned().unwrap_or(Line { text: String::new(), inode: 0, offset: 0, truncated: false });
                if out.send(Message::Audit(dropped_event(&asset, path, dropped, &at))).await.is_err() {
                    return;
                }
            }
            // Records still held by the assembler are re-read after a
            // restart: the saved position stops before the first of them.
            let pending = match parser {
                Parser::Auditd(asm) => asm.pending_first(),
                Parser::Authlog | Parser::K8sAudit => None,
            };
            if let Err(e) = t.save_before(pending) {
                tracing::warn!(file = %t.path().display(), error = %e, "cannot save the audit log position");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::AssetKind;

    fn asset() -> Asset {
        Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() }
    }

    /// Runs the sources over `files` until `n` events arrived.
    async fn events(dir: &Path, cfg: AuditConfig, n: usize) -> Vec<AuditEvent> {
        let root = HostRoot::new(dir);
        let (tx, mut rx) = mpsc::channel(100);
        let state = dir.to_path_buf();
        let task = tokio::spawn(async move { run(&root, &state, &cfg, asset(), tx).await });
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(Message::Audit(e))) => got.push(e),
                other => panic!("expected {n} events, got {} then {other:?}", got.len()),
            }
        }
        task.abort();
        got
    }

    #[tokio::test]
    async fn floods_are_cut_to_the_rate_and_the_drop_is_reported() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/log")).unwrap();
        let lines: String = (0..10).map(|i| format!("Nov 22 19:22:{i:02} h sshd[1]: Invalid user u{i} from 192.0.2.1 port 22\n")).collect();
        std::fs::write(d.path().join("var/log/auth.log"), lines).unwrap();
        let cfg = AuditConfig {
            authlog: vec!["/var/log/auth.log".into()],
            auditd: vec![],
            from_start: true,
            poll_ms: 50,
            rate_limit_per_sec: 1,
            burst: 3,
            ..AuditConfig::default()
        };
        let got = events(d.path(), cfg, 4).await;
        assert_eq!(got[..3].iter().map(|e| e.actor.user.clone().unwrap()).collect::<Vec<_>>(), vec!["u0", "u1", "u2"]);
        assert_eq!((got[3].action.as_str(), got[3].extra["dropped"].as_str()), ("events_dropped", "7"));
        assert_eq!(got[0].event_id.len(), 32);
    }

    #[tokio::test]
    async fn auditd_events_survive_a_restart_in_the_middle_of_an_event() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/log/audit")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "alice:x:1000:1000::/:/bin/sh\n").unwrap();
        let log = d.path().join("var/log/audit/audit.log");
        // One poll per run (the first tick is immediate; the next is far away).
        let cfg = AuditConfig {
            authlog: vec![],
            auditd: vec!["/var/log/audit/audit.log".into()],
            from_start: true,
            poll_ms: 60_000,
            ..AuditConfig::default()
        };
        // A complete event, then the first record of the next one.
        std::fs::write(&log, "type=USER_CMD msg=audit(1700000000.000:1): pid=1 uid=1000 auid=1000 msg='cmd=6C73 exe=\"/usr/bin/sudo\" res=success'\ntype=SYSCALL msg=audit(1700000001.000:2): syscall=257 success=yes auid=1000 uid=0 comm=\"vi\" key=\"identity\"\n").unwrap();
        let first = events(d.path(), cfg.clone(), 1).await;
        assert_eq!(
            (first[0].action.as_str(), first[0].actor.user.as_deref(), first[0].object.as_deref()),
            ("user_cmd", Some("alice"), Some("ls"))
        );
        // "Restart": the rest of event 2 arrives; a new run reads it whole.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        use std::io::Write;
        f.write_all(
            b"type=PATH msg=audit(1700000001.000:2): item=0 name=\"/etc/shadow\" nametype=NORMAL\ntype=EOE msg=audit(1700000001.000:2):\n",
        )
        .unwrap();
        let second = events(d.path(), AuditConfig { from_start: false, ..cfg }, 1).await;
        assert_eq!(second[0].action, "syscall");
        assert_eq!(second[0].object.as_deref(), Some("/etc/shadow"));
        assert_eq!(second[0].extra["record_types"], "SYSCALL,PATH,EOE");
        assert_eq!(second[0].source, AuditSource::Auditd);
    }
}
