//! The cluster agent's settings (the `cluster` section).

use std::path::PathBuf;

use serde::Deserialize;

use super::checks::Kind;

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
    /// Resources whose objects are shipped whole, for checks written in CEL
    /// over their fields: `k8s.objects.<resource>["<namespace>/<name>"]`
    /// (`pods`, `namespaces`, `nodes`, `serviceaccounts`, `networkpolicies`,
    /// `ingresses`, `clusterroles`, `clusterrolebindings`, `roles`,
    /// `rolebindings`; `secrets` as metadata, with `secrets_metadata`).
    /// Each object without `status`, `managedFields`, `resourceVersion`
    /// and `last-applied-configuration`, and with the value of every
    /// environment variable whose name says it is a secret redacted. None
    /// by default.
    pub objects: Vec<String>,
    /// The most bytes of objects one snapshot carries (all resources of
    /// `objects` together). A resource whose objects do not fit is left out
    /// whole, and `k8s.errors` says so: the checks reading it are unknown,
    /// never judged on part of it.
    pub objects_max_bytes: usize,
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
            objects: Vec::new(),
            objects_max_bytes: 512 * 1024,
        }
    }
}

impl ClusterConfig {
    /// The resources of `objects`, or the first name that is not one.
    pub fn object_kinds(&self) -> Result<Vec<Kind>, String> {
        self.objects
            .iter()
            .map(|name| {
                let kind = Kind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
                    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    format!("cluster.objects: {name:?} is not a resource the cluster agent follows ({})", names.join(", "))
                })?;
                if kind == Kind::Secrets && !self.secrets_metadata {
                    return Err("cluster.objects: secrets needs cluster.secrets_metadata (Secrets are only ever read as metadata)".into());
                }
                Ok(kind)
            })
            .collect()
    }
}
