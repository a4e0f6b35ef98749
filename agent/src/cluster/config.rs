//! The cluster agent's settings (the `cluster` section).

use std::path::PathBuf;

use serde::Deserialize;

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
