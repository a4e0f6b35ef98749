//! What facts to collect (the `facts` section) and the file scan's bounds.

use serde::Deserialize;

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
    /// Files whose content is reported as lines or key/values
    /// (`content["<path>"].*`), for packs that check what no fact family
    /// reads.
    pub content: Vec<crate::facts::content::ContentFile>,
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
            content: Vec::new(),
        }
    }
}
