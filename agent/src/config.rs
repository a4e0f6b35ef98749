//! Agent configuration: one YAML file, overridable by environment
//! variables `DRIFTWATCH_AGENT__SECTION__KEY`. Every field has a default;
//! an empty file is a valid configuration for a host with a local broker.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::audit::config::{AuditConfig, JournaldConfig};
pub use crate::cluster::config::ClusterConfig;
pub use crate::facts::config::{FactsConfig, ScanConfig};
pub use crate::probes::config::{Headers, ProbeConfig, ProbeKind};
pub use crate::redact::RedactConfig;
pub use crate::ship::config::{KafkaConfig, SpoolConfig, TopicsConfig};
pub use crate::snapshot::{AssetConfig, SnapshotConfig};

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `host` (a host or a Kubernetes node: facts, audit logs, probes) or
    /// `cluster` (the cluster agent: API objects, probes).
    pub mode: Mode,
    /// Where the host's filesystem is mounted (`/`, or `/host` in a pod).
    pub root: PathBuf,
    /// Offsets, sequence numbers and the agent id are kept here.
    pub state_dir: PathBuf,
    pub asset: AssetConfig,
    pub kafka: KafkaConfig,
    pub facts: FactsConfig,
    pub snapshots: SnapshotConfig,
    pub audit: AuditConfig,
    pub probes: Vec<ProbeConfig>,
    pub redact: RedactConfig,
    pub spool: SpoolConfig,
    /// The cluster agent's API access (`mode: cluster`).
    pub cluster: ClusterConfig,
    /// Seconds between heartbeats (0: none): proof that the agent is alive
    /// when nothing changes, so that its asset's evidence stays current.
    pub heartbeat_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            mode: Mode::Host,
            root: PathBuf::from("/"),
            state_dir: PathBuf::from("/var/lib/driftwatch-agent"),
            asset: AssetConfig::default(),
            kafka: KafkaConfig::default(),
            facts: FactsConfig::default(),
            snapshots: SnapshotConfig::default(),
            audit: AuditConfig::default(),
            probes: Vec::new(),
            redact: RedactConfig::default(),
            spool: SpoolConfig::default(),
            cluster: ClusterConfig::default(),
            heartbeat_secs: 60,
        }
    }
}

/// What an agent collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Host,
    Cluster,
}

impl AgentConfig {
    /// Loads and validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let cfg: AgentConfig = driftwatch_schemas::settings::load(path, "DRIFTWATCH_AGENT", std::env::vars())?;
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            anyhow::bail!(
                "{}: invalid configuration:\n  {}",
                path.map(|p| p.display().to_string()).unwrap_or_else(|| "<defaults>".into()),
                problems.join("\n  ")
            )
        }
    }

    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.kafka.brokers.trim().is_empty() {
            p.push("kafka.brokers: must name at least one broker".into());
        }
        if !["zstd", "lz4", "gzip", "snappy", "none"].contains(&self.kafka.compression.as_str()) {
            p.push(format!("kafka.compression: {:?} is not one of zstd, lz4, gzip, snappy, none", self.kafka.compression));
        }
        if self.kafka.wire_format == crate::ship::config::WireFormat::Confluent || self.kafka.schema_registry.is_set() {
            if let Err(e) = self.kafka.schema_registry.validate("kafka.schema_registry") {
                p.push(format!("{e} (kafka.wire_format: confluent needs a schema registry)"));
            }
        }
        if self.mode == Mode::Cluster {
            let c = &self.cluster;
            if c.name.trim().is_empty() {
                p.push("cluster.name: must name the cluster".into());
            }
            if let Some(u) = &c.api_server {
                if !matches!(reqwest::Url::parse(u), Ok(u) if u.scheme() == "https" || u.scheme() == "http") {
                    p.push(format!("cluster.api_server: {u:?} is not an https URL"));
                }
            }
            for (field, f) in [("cluster.ca_file", &c.ca_file), ("cluster.token_file", &c.token_file)] {
                if let Some(f) = f.as_ref().filter(|f| !f.is_file()) {
                    p.push(format!("{field}: {} does not exist", f.display()));
                }
            }
            if c.page_size == 0 || c.watch_timeout_secs == 0 {
                p.push("cluster.page_size, cluster.watch_timeout_secs: must be at least 1".into());
            }
            if let Err(e) = c.object_kinds() {
                p.push(e);
            }
        }
        if self.spool.max_mb == 0 {
            p.push("spool.max_mb: must be at least 1".into());
        }
        if self.snapshots.full_interval_secs == 0 {
            p.push("snapshots.full_interval_secs: must be at least 1".into());
        }
        if self.audit.poll_ms == 0 {
            p.push("audit.poll_ms: must be at least 1".into());
        }
        if self.audit.rate_limit_per_sec == 0 {
            p.push("audit.rate_limit_per_sec: must be at least 1".into());
        }
        if self.audit.burst == 0 {
            p.push("audit.burst: must be at least 1".into());
        }
        if let Err(e) = crate::redact::Redactor::new(&self.redact.patterns) {
            p.push(e);
        }
        for (i, f) in self.facts.content.iter().enumerate() {
            if !f.path.starts_with('/') {
                p.push(format!("facts.content[{i}].path: {:?} must be an absolute host path", f.path));
            }
        }
        for (i, f) in self.facts.files.iter().enumerate() {
            if !f.starts_with('/') {
                p.push(format!("facts.files[{i}]: {f:?} must be an absolute host path"));
            }
        }
        for (name, list) in [("authlog", &self.audit.authlog), ("auditd", &self.audit.auditd), ("k8s_audit", &self.audit.k8s_audit)] {
            for (i, f) in list.iter().enumerate() {
                if !f.starts_with('/') {
                    p.push(format!("audit.{name}[{i}]: {f:?} must be an absolute host path"));
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, pr) in self.probes.iter().enumerate() {
            if !ids.insert(&pr.id) {
                p.push(format!("probes[{i}].id: duplicate probe id {:?}", pr.id));
            }
            if pr.id == driftwatch_schemas::HEARTBEAT_PROBE_ID {
                p.push(format!("probes[{i}].id: {:?} is the agent's heartbeat; choose another id", pr.id));
            }
            if pr.interval_secs == 0 {
                p.push(format!("probes[{i}].interval_secs: must be at least 1"));
            }
            match pr.kind {
                ProbeKind::Http => match &pr.url {
                    None => p.push(format!("probes[{i}].url: required for an http probe")),
                    Some(url) if !matches!(reqwest::Url::parse(url), Ok(u) if u.scheme() == "http" || u.scheme() == "https") => {
                        p.push(format!("probes[{i}].url: {url:?} is not an http(s) URL"))
                    }
                    Some(url) if pr.min_cert_days.is_some() && !url.starts_with("https://") => {
                        p.push(format!("probes[{i}].min_cert_days: only for https URLs"))
                    }
                    Some(_) => {
                        if let Err(e) = crate::probes::http::HttpProbe::new(pr) {
                            p.push(format!("probes[{i}].{e}"));
                        }
                    }
                },
                ProbeKind::Tcp => match &pr.target {
                    Some(t) if t.rsplit_once(':').is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok()) => {}
                    Some(t) => p.push(format!("probes[{i}].target: {t:?} is not host:port")),
                    None => p.push(format!("probes[{i}].target: required (host:port) for a tcp probe")),
                },
                ProbeKind::Dns => {
                    if pr.target.as_deref().is_none_or(|t| t.trim().is_empty()) {
                        p.push(format!("probes[{i}].target: required (a host name) for a dns probe"));
                    }
                }
                ProbeKind::Host => {}
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, String> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        AgentConfig::load(Some(f.path())).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn tcp_and_dns_probes_need_a_target() {
        let c =
            load("probes:\n  - {id: db, kind: tcp, target: \"127.0.0.1:5432\"}\n  - {id: ns, kind: dns, target: example.org}\n").unwrap();
        assert_eq!((c.probes[0].kind, c.probes[1].kind), (ProbeKind::Tcp, ProbeKind::Dns));
        let e = load("probes:\n  - {id: db, kind: tcp, target: db}\n  - {id: ns, kind: dns}\n  - {id: heartbeat, kind: dns, target: x}\n")
            .unwrap_err();
        for want in [
            "probes[0].target: \"db\" is not host:port",
            "probes[1].target: required",
            "probes[2].id: \"heartbeat\" is the agent's heartbeat",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn probes_parse_and_unknown_fields_are_located() {
        let c = load("probes:\n  - id: web\n    kind: http\n    url: http://127.0.0.1/\n    interval_secs: 5\n").unwrap();
        assert_eq!((c.probes[0].kind, c.probes[0].interval_secs), (ProbeKind::Http, 5));
        let e = load("probes:\n  - id: web\n    kind: http\n    url: http://x/\n    intervall: 5\n").unwrap_err();
        assert!(e.contains(":5:") && e.contains("intervall"), "{e}");
    }

    #[test]
    fn http_probe_settings_and_cluster_mode_are_validated() {
        let c = load("probes:\n  - {id: api, kind: http, url: 'https://x/', method: post, headers: {X-Token: t}, expect_body: ok, min_cert_days: 14, jitter_ms: 0}\n  - {id: host, kind: host}\n").unwrap();
        assert_eq!((c.probes[0].jitter(), c.probes[1].jitter()), (std::time::Duration::ZERO, std::time::Duration::from_secs(3)));
        assert!(
            !format!("{:?}", c.probes[0]).contains("X-Token: t") && !format!("{:?}", c.probes[0]).contains("\"t\""),
            "header values are not logged"
        );
        let e = load("probes:\n  - {id: a, kind: http, url: 'http://x/', min_cert_days: 3}\n  - {id: b, kind: http, url: 'http://x/', expect_body: '('}\nkafka: {compression: brotli}\nspool: {max_mb: 0}\n").unwrap_err();
        for want in ["probes[0].min_cert_days: only for https", "probes[1].expect_body:", "kafka.compression: \"brotli\"", "spool.max_mb"] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = load("mode: cluster\ncluster: {name: '', api_server: 'ftp://x', ca_file: /nonexistent/ca.crt}\n").unwrap_err();
        for want in ["cluster.name", "cluster.api_server: \"ftp://x\"", "cluster.ca_file: /nonexistent/ca.crt does not exist"] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let c = load("mode: cluster\ncluster: {name: prod, api_server: 'https://10.0.0.1:6443'}\n").unwrap();
        assert_eq!(c.cluster.server().unwrap(), "https://10.0.0.1:6443");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let e =
            load("facts:\n  files: [etc/shadow]\nprobes:\n  - {id: a, kind: http}\n  - {id: a, kind: http, url: 'ftp://x'}\n").unwrap_err();
        for want in ["facts.files[0]", "probes[0].url: required", "probes[1].id: duplicate", "probes[1].url: \"ftp://x\""] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }
}
