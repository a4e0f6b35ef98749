//! Agent configuration: one YAML file, overridable by environment
//! variables `DRIFTWATCH_AGENT__SECTION__KEY`. Every field has a default;
//! an empty file is a valid configuration for a host with a local broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use driftwatch_schemas::AssetKind;
use serde::Deserialize;

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

/// Redaction of secrets before anything is shipped (built-in patterns are
/// always on; see `redact.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Extra regular expressions; every match is replaced.
    pub patterns: Vec<String>,
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

/// The cluster agent's access to the Kubernetes API (see `cluster/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster's name: the asset's id and its `cluster` label.
    pub name: String,
    /// The API server's URL; default: the in-cluster service address.
    pub api_server: Option<String>,
    /// Bearer token file; default: the pod's service account token.
    pub token_file: Option<PathBuf>,
    /// PEM of the CA that signed the API server's certificate; default: the
    /// pod's service account `ca.crt`.
    pub ca_file: Option<PathBuf>,
    /// Objects per list page.
    pub page_size: u32,
    /// How long one watch request lasts before it is renewed.
    pub watch_timeout_secs: u64,
    /// Quiet time after a change before the delta is sent.
    pub debounce_ms: u64,
    /// Namespaces whose objects are not reported.
    pub exclude_namespaces: Vec<String>,
    /// Also follow Secrets, as metadata only (for `k8s.secrets.*`: legacy
    /// service account tokens). Off by default: it needs RBAC to list
    /// Secrets, which Kubernetes cannot limit to metadata, so a stolen
    /// token of the agent could read every secret's data. Turn it on only
    /// with the extra role in `deploy/kubernetes/opt-in/secrets-metadata.yaml`
    /// (Helm: `clusterAgent.secretsMetadata`).
    pub secrets_metadata: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "kubernetes".into(),
            api_server: None,
            token_file: None,
            ca_file: None,
            page_size: 500,
            watch_timeout_secs: 290,
            debounce_ms: 1_000,
            exclude_namespaces: ["kube-system", "kube-public", "kube-node-lease"].iter().map(|s| s.to_string()).collect(),
            secrets_metadata: false,
        }
    }
}

/// The on-disk spool every message passes through on its way to Kafka
/// (`<state_dir>/spool`): it holds what the broker has not acknowledged,
/// across broker outages and agent restarts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Size bound in MiB; when it is reached the oldest undelivered
    /// messages are dropped (and counted in the heartbeat).
    pub max_mb: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_mb: 256 }
    }
}

impl SpoolConfig {
    pub fn max_bytes(&self) -> u64 {
        self.max_mb.saturating_mul(1 << 20)
    }

    /// Segments: a sixteenth of the bound, between 64 KiB and 16 MiB.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes() / 16).clamp(64 << 10, 16 << 20)
    }
}

/// Identity of the asset this agent reports on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetConfig {
    /// Asset id; default: the host's `/etc/machine-id`, else its hostname.
    pub id: Option<String>,
    /// Hostname; default: the host's `/etc/hostname`, else the agent's.
    pub hostname: Option<String>,
    pub kind: AssetKind,
    pub labels: BTreeMap<String, String>,
}

impl Default for AssetConfig {
    fn default() -> Self {
        AssetConfig { id: None, hostname: None, kind: AssetKind::Host, labels: BTreeMap::new() }
    }
}

/// Kafka producer settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    /// Batch compression: `zstd`, `lz4`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topics: TopicsConfig::default(),
            compression: "zstd".into(),
            properties: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("compression", &self.compression)
            .field("properties", &driftwatch_schemas::settings::masked(&self.properties))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub snapshots: String,
    pub audit: String,
    pub sla: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig { snapshots: "driftwatch.snapshots".into(), audit: "driftwatch.audit".into(), sla: "driftwatch.sla".into() }
    }
}

/// What facts to collect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FactsConfig {
    /// Sensitive files whose owner, group and mode are reported.
    pub files: Vec<String>,
    /// Report `host.*` facts of the machine the agent runs on. Default:
    /// only when `root` is `/`; set `true` in a pod that shares the host's
    /// PID namespace and reads the host at `/host`.
    pub live_host: Option<bool>,
    /// The world-writable / set-uid scan (full snapshots only).
    pub scan: ScanConfig,
    /// Certificate files (globs allowed) reported under `tls.cert`.
    pub tls: Vec<String>,
}

/// Bounds of the world-writable / set-uid scan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Host paths to walk (each on its own file system only); empty disables.
    pub paths: Vec<String>,
    /// Entries examined at most.
    pub max_files: u64,
    /// Time spent at most.
    pub max_seconds: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            paths: ["/bin", "/sbin", "/usr", "/etc", "/opt", "/var", "/home", "/root", "/tmp"].iter().map(|s| s.to_string()).collect(),
            max_files: 200_000,
            max_seconds: 20,
        }
    }
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            files: crate::facts::files::DEFAULT_FILES.iter().map(|s| s.to_string()).collect(),
            live_host: None,
            scan: ScanConfig::default(),
            tls: crate::facts::tls::DEFAULT_PATHS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// When to snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Seconds between full snapshots.
    pub full_interval_secs: u64,
    /// Watch the files facts were read from and send deltas on change.
    pub watch: bool,
    /// Quiet time after a change before the delta is collected.
    pub debounce_ms: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { full_interval_secs: 3600, watch: true, debounce_ms: 500 }
    }
}

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

/// One SLA probe. Fields beyond `id` and `kind` depend on the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub id: String,
    pub kind: ProbeKind,
    /// http: the URL.
    #[serde(default)]
    pub url: Option<String>,
    /// http: the request method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// http: request headers (values may be `{file: PATH}` secrets).
    #[serde(default)]
    pub headers: Headers,
    /// http: the request body.
    #[serde(default)]
    pub body: Option<String>,
    /// http: the status that counts as success (default: any 2xx).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// http: a regular expression the response body must match (the first
    /// MiB is read).
    #[serde(default)]
    pub expect_body: Option<String>,
    /// https: fail when the server certificate expires in fewer days.
    #[serde(default)]
    pub min_cert_days: Option<i64>,
    /// https: a PEM file of extra CA certificates to trust (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// tcp: `host:port` to connect to; dns: the name to resolve.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Random extra delay before each run, up to this; default a tenth of
    /// the interval.
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

impl ProbeConfig {
    pub fn jitter(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.jitter_ms.unwrap_or(self.interval_secs.saturating_mul(100)))
    }
}

/// HTTP headers of a probe; their values never appear in logs.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "***"))).finish()
    }
}

/// Probe kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// HTTP(S) request.
    Http,
    /// A TCP connect to `target` (`host:port`).
    Tcp,
    /// Resolving `target` (a host name).
    Dns,
    /// Host metrics: CPU, memory, the fullest disk, load.
    Host,
}

fn default_interval() -> u64 {
    30
}
fn default_timeout() -> u64 {
    5_000
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
