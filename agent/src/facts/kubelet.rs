//! `kubelet.*`: the kubelet's effective configuration on a Kubernetes node
//! (the node agent reads the node at `/host`), and `files[…]` for the
//! kubelet's and kube-proxy's kubeconfigs, configuration and PKI files.
//!
//! The configuration file is the first of [`CONFIG_FILES`] that exists
//! (YAML or JSON, a `KubeletConfiguration`). It is flattened into
//! `kubelet.config.<field path>` with the field names as written there
//! (`kubelet.config.authentication.anonymous.enabled`,
//! `kubelet.config.featureGates.RotateKubeletServerCertificate`; lists are
//! lists of strings), the contract of `policies/kubernetes/kubelet.yaml`.
//! Security-relevant settings the file leaves unset take the defaults of
//! `kubelet.config.k8s.io/v1beta1` ([`DEFAULTS`]; not the command-line flag
//! defaults, which differ: with a config file the read-only port is 0), so
//! that a check sees the kubelet's behaviour; `kubelet.explicit` lists the
//! top-level keys the file itself sets. Also `kubelet.present`,
//! `kubelet.config_file`, and `kubelet.errors` when the file does not parse.

use driftwatch_schemas::{FactPath, FactValue};
use serde_yaml::{Mapping, Value};

use super::Facts;
use crate::root::HostRoot;

/// Where kubelets keep their configuration file (kubeadm, EKS, others).
pub const CONFIG_FILES: &[&str] =
    &["/var/lib/kubelet/config.yaml", "/etc/kubernetes/kubelet/kubelet-config.json", "/etc/kubernetes/kubelet-config.yaml"];

/// Kubeconfigs, configuration and PKI whose modes and owners are reported
/// on a node (globs allowed; a missing fixed path is reported as missing).
pub const NODE_FILES: &[&str] = &[
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/var/lib/kubelet/kubeconfig",
    "/var/lib/kube-proxy/kubeconfig.conf",
    "/var/lib/kube-proxy/config.conf",
    "/etc/kubernetes/manifests",
    "/etc/kubernetes/pki/*.crt",
    "/etc/kubernetes/pki/*.key",
    "/var/lib/kubelet/pki/*",
    "/etc/systemd/system/kubelet.service.d/*.conf",
];

/// `KubeletConfiguration` v1beta1 defaults of the settings checks read.
pub const DEFAULTS: &[(&[&str], &str)] = &[
    (&["authentication", "anonymous", "enabled"], "false"),
    (&["authentication", "webhook", "enabled"], "true"),
    (&["authentication", "x509", "clientCAFile"], "''"),
    (&["authorization", "mode"], "Webhook"),
    (&["readOnlyPort"], "0"),
    (&["protectKernelDefaults"], "false"),
    (&["makeIPTablesUtilChains"], "true"),
    (&["rotateCertificates"], "false"),
    (&["serverTLSBootstrap"], "false"),
    (&["streamingConnectionIdleTimeout"], "4h0m0s"),
    (&["eventRecordQPS"], "50"),
    (&["tlsCertFile"], "''"),
    (&["tlsPrivateKeyFile"], "''"),
];

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let found = CONFIG_FILES.iter().find_map(|p| match root.read_to_string(p) {
        Ok(Some(text)) => Some((*p, text)),
        _ => None,
    });
    let Some((path, text)) = found else {
        facts.set(&FactPath::new(["kubelet", "present"]), false);
        return;
    };
    facts.set(&FactPath::new(["kubelet", "present"]), true);
    facts.set(&FactPath::new(["kubelet", "config_file"]), path);
    let mut cfg = match serde_yaml::from_str::<Value>(&text) {
        Ok(Value::Mapping(m)) => m,
        Ok(_) => {
            facts.error("kubelet", format!("{path}: not a KubeletConfiguration mapping"));
            Mapping::new()
        }
        Err(e) => {
            facts.error("kubelet", format!("{path}: {e}"));
            Mapping::new()
        }
    };
    let explicit: Vec<String> = cfg.keys().filter_map(|k| k.as_str().map(String::from)).collect();
    facts.set(&FactPath::new(["kubelet", "explicit"]), explicit);
    for (keys, default) in DEFAULTS {
        set_default(&mut cfg, keys, default);
    }
    flatten(&mut vec!["kubelet".to_string(), "config".to_string()], &cfg, facts);

    // The files around the kubelet, and the CA it trusts for clients.
    let mut files: Vec<String> = NODE_FILES.iter().map(|s| s.to_string()).collect();
    files.push(path.to_string());
    if let Some(ca) = lookup(&cfg, &["authentication", "x509", "clientCAFile"]).and_then(Value::as_str) {
        if ca.starts_with('/') {
            files.push(ca.to_string());
        }
    }
    super::files::collect(root, &files, facts);
}

fn lookup<'a>(m: &'a Mapping, keys: &[&str]) -> Option<&'a Value> {
    let (first, rest) = keys.split_first()?;
    let v = m.get(*first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        lookup(v.as_mapping()?, rest)
    }
}

/// Sets `keys` to `default` (YAML) unless the file sets it; a non-mapping
/// on the way is left as written.
fn set_default(m: &mut Mapping, keys: &[&str], default: &str) {
    let Some((first, rest)) = keys.split_first() else { return };
    let key = Value::String(first.to_string());
    if rest.is_empty() {
        if !m.contains_key(&key) || m.get(&key).is_some_and(Value::is_null) {
            m.insert(key, serde_yaml::from_str(default).unwrap_or(Value::Null));
        }
        return;
    }
    let child = m.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()));
    if child.is_null() {
        *child = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(c) = child {
        set_default(c, rest, default);
    }
}

fn flatten(path: &mut Vec<String>, m: &Mapping, facts: &mut Facts) {
    for (k, v) in m {
        let Some(k) = k.as_str() else { continue };
        path.push(k.to_string());
        let value = match v {
            Value::Mapping(child) => {
                flatten(path, child, facts);
                None
            }
            Value::Bool(b) => Some(FactValue::Bool(*b)),
            Value::Number(n) => Some(n.as_i64().map(FactValue::Int).unwrap_or_else(|| FactValue::Float(n.as_f64().unwrap_or(0.0)))),
            Value::String(s) => Some(FactValue::Str(s.clone())),
            Value::Sequence(items) => Some(FactValue::List(items.iter().filter_map(scalar_text).collect())),
            Value::Null | Value::Tagged(_) => None,
        };
        if let Some(v) = value {
            facts.set(&FactPath::new(path.iter().map(String::as_str)), v);
        }
        path.pop();
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::testing::collect_with;

    #[test]
    fn defaults_of_the_config_file_apply_to_unset_settings() {
        let f = collect_with(
            &[("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")],
            collect,
        );
        assert_eq!(f.0["kubelet.present"], true.into());
        assert_eq!(f.0["kubelet.config.authentication.anonymous.enabled"], false.into());
        assert_eq!(f.0["kubelet.config.authorization.mode"], "Webhook".into());
        assert_eq!(f.0["kubelet.config.readOnlyPort"], 0i64.into());
        assert_eq!(f.0["kubelet.config.rotateCertificates"], false.into());
        assert_eq!(f.0["kubelet.config.authentication.x509.clientCAFile"], "".into());
        assert_eq!(f.0["kubelet.explicit"], vec!["apiVersion".to_string(), "kind".to_string()].into());
        assert_eq!(f.0[r#"files["/var/lib/kubelet/config.yaml"].exists"#], true.into());
        assert_eq!(f.0[r#"files["/etc/kubernetes/kubelet.conf"].exists"#], false.into());
    }

    #[test]
    fn a_weak_kubelet_is_seen_as_such() {
        let cfg = "authentication:\n  anonymous: {enabled: true}\n  webhook: {enabled: false}\n  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}\nauthorization: {mode: AlwaysAllow}\nreadOnlyPort: 10255\nprotectKernelDefaults: false\nrotateCertificates: true\nfeatureGates: {RotateKubeletServerCertificate: true}\nstreamingConnectionIdleTimeout: \"0\"\ntlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n";
        let f = collect_with(&[("/var/lib/kubelet/config.yaml", cfg), ("/etc/kubernetes/pki/ca.crt", "x")], collect);
        assert_eq!(f.0["kubelet.config.authentication.anonymous.enabled"], true.into());
        assert_eq!(f.0["kubelet.config.authentication.webhook.enabled"], false.into());
        assert_eq!(f.0["kubelet.config.authorization.mode"], "AlwaysAllow".into());
        assert_eq!(f.0["kubelet.config.readOnlyPort"], 10255i64.into());
        assert_eq!(f.0["kubelet.config.featureGates.RotateKubeletServerCertificate"], true.into());
        assert_eq!(f.0["kubelet.config.streamingConnectionIdleTimeout"], "0".into());
        assert_eq!(f.0["kubelet.config.authentication.x509.clientCAFile"], "/etc/kubernetes/pki/ca.crt".into());
        assert_eq!(f.0["kubelet.config.tlsCipherSuites"], vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()].into());
        assert_eq!(f.0[r#"files["/etc/kubernetes/pki/ca.crt"].exists"#], true.into());
    }

    #[test]
    fn eks_json_config_and_broken_files() {
        let f = collect_with(
            &[(
                "/etc/kubernetes/kubelet/kubelet-config.json",
                r#"{"readOnlyPort": 0, "authentication": {"anonymous": {"enabled": false}}}"#,
            )],
            collect,
        );
        assert_eq!(f.0["kubelet.config_file"], "/etc/kubernetes/kubelet/kubelet-config.json".into());
        let f = collect_with(&[("/var/lib/kubelet/config.yaml", "readOnlyPort: [\n")], collect);
        assert!(f.0.contains_key("kubelet.errors"));
        assert_eq!(f.0["kubelet.present"], true.into());
        let f = collect_with(&[("/etc/hostname", "plain-host\n")], collect);
        assert_eq!(f.0["kubelet.present"], false.into());
        assert!(!f.0.keys().any(|k| k.starts_with("files[")), "no kube files reported on a plain host");
    }
}
