//! The SLA probes' settings (each entry of `probes`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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
