//! journald, through `journalctl -o json --follow` (no libsystemd link).
//!
//! Only security-relevant programs are read (`SYSLOG_IDENTIFIER` matches,
//! ORed by journalctl), and their messages are interpreted by the same
//! rules as auth log lines. The journal cursor is saved in the state
//! directory, so a restart resumes after the last event shipped; for a
//! mounted host root, `--directory=<root>/var/log/journal` is read.
//!
//! By default (`audit.journald.enabled` unset) the source runs when
//! `journalctl` and a journal exist and none of the configured auth logs
//! does: hosts without rsyslog log auth events only to the journal, and
//! hosts with it would otherwise report each event twice.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use driftwatch_schemas::{Asset, AuditEvent, AuditSource, Message};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::authlog::{self, Parsed};
use super::config::JournaldConfig;
use crate::root::HostRoot;

/// One journal entry, interpreted; `cursor` identifies it.
pub struct Entry {
    pub cursor: String,
    pub message: String,
    pub parsed: Parsed,
}

/// A journald field as text: a string, or an array of bytes (journald's
/// JSON form for non-UTF-8 values); the first of repeated values.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            Some(String::from_utf8_lossy(&items.iter().filter_map(Value::as_u64).map(|b| b as u8).collect::<Vec<_>>()).into_owned())
        }
        Value::Array(items) => items.first().and_then(text),
        _ => None,
    }
}

/// Parses one line of `journalctl -o json`.
pub fn parse(line: &str) -> Result<Entry, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not journal JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(text);
    let cursor = field("__CURSOR").ok_or("entry without __CURSOR")?;
    let message = field("MESSAGE").unwrap_or_default();
    let prog = field("SYSLOG_IDENTIFIER").or_else(|| field("_COMM")).unwrap_or_else(|| "journald".into());
    let mut p = Parsed::empty();
    authlog::parse_message(&prog, field("_PID").or_else(|| field("SYSLOG_PID")).as_deref(), &message, &mut p);
    p.timestamp = field("__REALTIME_TIMESTAMP").and_then(|t| t.parse::<i64>().ok()).and_then(|us| Utc.timestamp_micros(us).single());
    if let Some(h) = field("_HOSTNAME") {
        p.extra.insert("host".into(), h);
    }
    if let Some(u) = field("_SYSTEMD_UNIT") {
        p.extra.insert("unit".into(), u);
    }
    Ok(Entry { cursor, message, parsed: p })
}

/// The journalctl arguments for a run.
pub fn args(cfg: &JournaldConfig, root: &HostRoot, cursor: Option<&str>, from_start: bool) -> Vec<String> {
    let mut a = vec!["-o".to_string(), "json".into(), "--follow".into(), "--no-pager".into()];
    if root.root() != Path::new("/") {
        a.push(format!("--directory={}", root.path("/var/log/journal").display()));
    }
    match cursor {
        Some(c) => a.push(format!("--after-cursor={c}")),
        None if from_start => a.push("--lines=all".into()),
        None => a.push("--lines=0".into()),
    }
    a.extend(cfg.identifiers.iter().map(|i| format!("SYSLOG_IDENTIFIER={i}")));
    a
}

/// Whether the source should run (see the module docs).
pub fn should_run(cfg: &JournaldConfig, root: &HostRoot, authlogs: &[String]) -> bool {
    if let Some(e) = cfg.enabled {
        return e;
    }
    let has_cmd = which(&cfg.command).is_some();
    let has_journal = ["/var/log/journal", "/run/log/journal"].iter().any(|d| root.path(d).is_dir());
    let has_authlog = authlogs.iter().any(|p| root.path(p).is_file());
    has_cmd && has_journal && !has_authlog
}

fn which(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Path::new(cmd).is_file().then(|| PathBuf::from(cmd));
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(cmd)).find(|c| c.is_file()))
}

/// Follows the journal until the channel closes; restarts journalctl if it
/// exits.
pub async fn run(
    cfg: &JournaldConfig,
    root: &HostRoot,
    state_dir: &Path,
    from_start: bool,
    limiter: &governor::DefaultDirectRateLimiter,
    asset: &Asset,
    out: &mpsc::Sender<Message>,
) {
    let cursor_file = state_dir.join("journald.cursor");
    loop {
        let cursor = std::fs::read_to_string(&cursor_file).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let mut child = match tokio::process::Command::new(&cfg.command)
            .args(args(cfg, root, cursor.as_deref(), from_start))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(command = %cfg.command, error = %e, "cannot start journalctl; retrying in 30 s");
                tokio::time::sleep(Duration::from_secs(30)).await;
                continue;
            }
        };
        let Some(stdout) = child.stdout.take() else { return };
        let mut lines = BufReader::new(stdout).lines();
        let mut last_saved = Instant::now();
        let mut pending_cursor: Option<String> = None;
        let mut dropped = 0u64;
        while let Ok(Some(line)) = lines.next_line().await {
            let entry = match parse(&line) {
                Ok(e) => e,
                Err(reason) => {
                    tracing::warn!(%reason, "unreadable journal line skipped");
                    continue;
                }
            };
            if limiter.check().is_err() {
                dropped += 1;
            } else if out.send(Message::Audit(event(asset, &entry))).await.is_err() {
                return;
            }
            pending_cursor = Some(entry.cursor);
            if last_saved.elapsed() >= Duration::from_secs(1) {
                if dropped > 0 {
                    let _ = out.send(Message::Audit(dropped_event(asset, dropped))).await;
                    dropped = 0;
                }
                save(&cursor_file, pending_cursor.take());
                last_saved = Instant::now();
            }
        }
        if dropped > 0 && out.send(Message::Audit(dropped_event(asset, dropped))).await.is_err() {
            return;
        }
        save(&cursor_file, pending_cursor.take());
        let status = child.wait().await;
        tracing::warn!(?status, "journalctl ended; restarting in 5 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn save(file: &Path, cursor: Option<String>) {
    if let Some(c) = cursor {
        if let Err(e) = std::fs::write(file, c) {
            tracing::warn!(file = %file.display(), error = %e, "cannot save the journal cursor");
        }
    }
}

pub(crate) fn event(asset: &Asset, e: &Entry) -> AuditEvent {
    let mut p = e.parsed.clone();
    p.extra.insert("cursor".into(), e.cursor.clone());
    super::build_event(asset, super::stable_id(&[&asset.id, "journald", &e.cursor]), AuditSource::Journald, p, e.message.clone())
}

fn dropped_event(asset: &Asset, count: u64) -> AuditEvent {
    let mut e =
        super::dropped_event(asset, "journald", count, &super::tail::Line { text: String::new(), inode: 0, offset: 0, truncated: false });
    e.event_id = super::stable_id(&[&asset.id, "journald-dropped", &uuid::Uuid::now_v7().to_string()]);
    e.source = AuditSource::Journald;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{AssetKind, Outcome};
    use std::os::unix::fs::PermissionsExt;

    const ENTRY: &str = r#"{"__CURSOR":"s=abc;i=1f","__REALTIME_TIMESTAMP":"1763805600123456","_HOSTNAME":"web1","SYSLOG_IDENTIFIER":"sshd","_PID":"811","MESSAGE":"Failed password for invalid user admin from 203.0.113.5 port 4242 ssh2","_SYSTEMD_UNIT":"ssh.service"}"#;

    #[test]
    fn entries_are_read_like_auth_log_lines() {
        let e = parse(ENTRY).unwrap();
        assert_eq!(e.cursor, "s=abc;i=1f");
        assert_eq!((e.parsed.action.as_str(), e.parsed.outcome), ("ssh_login_failed", Outcome::Failure));
        assert_eq!(e.parsed.source_address.as_deref(), Some("203.0.113.5"));
        assert_eq!(e.parsed.timestamp.unwrap().timestamp_subsec_micros(), 123_456);
        let bytes = r#"{"__CURSOR":"c","MESSAGE":[104,105],"SYSLOG_IDENTIFIER":"x"}"#;
        assert_eq!(parse(bytes).unwrap().message, "hi");
        assert!(parse("{}").is_err());
    }

    #[tokio::test]
    async fn follows_journalctl_and_resumes_after_the_saved_cursor() {
        let d = tempfile::tempdir().unwrap();
        // A stand-in for journalctl: records its arguments, prints entries.
        let script = d.path().join("journalctl");
        let argsfile = d.path().join("args");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\ncat <<'EOF'\n{ENTRY}\n{}\nEOF\nsleep 30\n",
                argsfile.display(),
                ENTRY.replace("i=1f", "i=20").replace("Failed password for invalid user admin", "Accepted publickey for alice")
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = JournaldConfig {
            enabled: Some(true),
            command: script.to_string_lossy().into(),
            identifiers: vec!["sshd".into(), "sudo".into()],
        };
        let root = HostRoot::new(d.path());
        let asset = Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() };
        let limiter = governor::RateLimiter::direct(governor::Quota::per_second(std::num::NonZeroU32::new(100).unwrap()));
        let (tx, mut rx) = mpsc::channel(10);
        let state = d.path().to_path_buf();
        let task = {
            let (cfg, asset) = (cfg.clone(), asset.clone());
            tokio::spawn(async move { run(&cfg, &root, &state, false, &limiter, &asset, &tx).await })
        };
        let mut got = Vec::new();
        while got.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Message::Audit(e))) => got.push(e),
                other => panic!("{other:?}"),
            }
        }
        task.abort();
        assert_eq!(got[0].source, AuditSource::Journald);
        assert_eq!((got[0].action.as_str(), got[1].action.as_str()), ("ssh_login_failed", "ssh_login"));
        assert_ne!(got[0].event_id, got[1].event_id);
        let args = std::fs::read_to_string(&argsfile).unwrap();
        assert!(
            args.contains("-o json --follow --no-pager --directory=")
                && args.contains("--lines=0 SYSLOG_IDENTIFIER=sshd SYSLOG_IDENTIFIER=sudo"),
            "{args}"
        );
        // The cursor is saved at the end of a run; the next run resumes after it.
        save(&d.path().join("journald.cursor"), Some(got[1].extra["cursor"].clone()));
        let next = args_for_resume(&cfg, d.path());
        assert!(next.contains(&"--after-cursor=s=abc;i=20".to_string()), "{next:?}");
    }

    fn args_for_resume(cfg: &JournaldConfig, dir: &Path) -> Vec<String> {
        let cursor = std::fs::read_to_string(dir.join("journald.cursor")).unwrap();
        args(cfg, &HostRoot::new(dir), Some(&cursor), false)
    }
}
