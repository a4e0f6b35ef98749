//! The audit sources' settings (the `audit` section).

use serde::Deserialize;

/// Audit log sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Auth logs (sshd, sudo, su, …) as host paths; missing files are
    /// waited for.
    pub authlog: Vec<String>,
    /// auditd logs (records grouped into events); missing files are waited for.
    pub auditd: Vec<String>,
    /// Kubernetes API-server audit logs (JSON lines), on control-plane nodes.
    pub k8s_audit: Vec<String>,
    /// journald, through journalctl.
    pub journald: JournaldConfig,
    /// How often the logs are checked for new lines.
    pub poll_ms: u64,
    /// Read a log from its start the first time (default: from its end).
    pub from_start: bool,
    /// Events per second per source before lines are dropped (and the
    /// drop reported as an `events_dropped` event).
    pub rate_limit_per_sec: u32,
    /// Events a source may send at once above the rate.
    pub burst: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            authlog: vec!["/var/log/auth.log".into(), "/var/log/secure".into()],
            auditd: vec!["/var/log/audit/audit.log".into()],
            journald: JournaldConfig::default(),
            k8s_audit: vec!["/var/log/kubernetes/audit/audit.log".into(), "/var/log/kube-apiserver/audit.log".into()],
            poll_ms: 500,
            from_start: false,
            rate_limit_per_sec: 500,
            burst: 2_000,
        }
    }
}

/// The journald source (see `audit/journald.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournaldConfig {
    /// `true`/`false`; unset: run when journalctl and a journal exist and no
    /// configured auth log does.
    pub enabled: Option<bool>,
    /// The journalctl command.
    pub command: String,
    /// `SYSLOG_IDENTIFIER`s read.
    pub identifiers: Vec<String>,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            enabled: None,
            command: "journalctl".into(),
            identifiers: [
                "sshd",
                "sudo",
                "su",
                "login",
                "useradd",
                "userdel",
                "usermod",
                "groupadd",
                "groupdel",
                "groupmod",
                "passwd",
                "chpasswd",
                "systemd-logind",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}
