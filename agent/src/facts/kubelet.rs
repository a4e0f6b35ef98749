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
//!
//! Where the agent sees the host's processes (`/proc` under its root), the
//! running kubelet's command line counts too, as it does for the kubelet:
//! its `--config` names the file, and the flags of [`FLAGS`] override what
//! the file says (`--anonymous-auth=true` beside a file that disables it
//! leaves anonymous access on). `kubelet.flags` lists the flags given and
//! `kubelet.overridden` the settings a flag decided; their top-level keys
//! are in `kubelet.explicit`. A kubelet running without a file has the
//! flags' own defaults ([`FLAG_DEFAULTS`]: the read-only port open,
//! anonymous access on, every request authorised).

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

/// How a flag's value is read into the configuration.
#[derive(Clone, Copy)]
enum Flag {
    Bool,
    Int,
    Str,
    /// Comma-separated.
    List,
    /// `Name=value,Name=value` (feature gates).
    Map,
}

/// Command-line flags and the `KubeletConfiguration` fields they set.
pub const FLAGS: &[(&str, &[&str])] = &[
    ("anonymous-auth", &["authentication", "anonymous", "enabled"]),
    ("authentication-token-webhook", &["authentication", "webhook", "enabled"]),
    ("client-ca-file", &["authentication", "x509", "clientCAFile"]),
    ("authorization-mode", &["authorization", "mode"]),
    ("read-only-port", &["readOnlyPort"]),
    ("protect-kernel-defaults", &["protectKernelDefaults"]),
    ("make-iptables-util-chains", &["makeIPTablesUtilChains"]),
    ("rotate-certificates", &["rotateCertificates"]),
    ("rotate-server-certificates", &["serverTLSBootstrap"]),
    ("streaming-connection-idle-timeout", &["streamingConnectionIdleTimeout"]),
    ("event-qps", &["eventRecordQPS"]),
    ("tls-cert-file", &["tlsCertFile"]),
    ("tls-private-key-file", &["tlsPrivateKeyFile"]),
    ("tls-cipher-suites", &["tlsCipherSuites"]),
    ("feature-gates", &["featureGates"]),
];

fn flag_kind(name: &str) -> Flag {
    match name {
        "anonymous-auth"
        | "authentication-token-webhook"
        | "protect-kernel-defaults"
        | "make-iptables-util-chains"
        | "rotate-certificates"
        | "rotate-server-certificates" => Flag::Bool,
        "read-only-port" | "event-qps" => Flag::Int,
        "tls-cipher-suites" => Flag::List,
        "feature-gates" => Flag::Map,
        _ => Flag::Str,
    }
}

/// The flags' defaults that differ from the file's, for a kubelet
/// running without a configuration file.
pub const FLAG_DEFAULTS: &[(&[&str], &str)] = &[
    (&["authentication", "anonymous", "enabled"], "true"),
    (&["authentication", "webhook", "enabled"], "false"),
    (&["authorization", "mode"], "AlwaysAllow"),
    (&["readOnlyPort"], "10255"),
];

/// The running kubelet's arguments (after the program), from the first
/// process under `/proc` named `kubelet`; `None` where the agent sees no
/// such process.
fn running_kubelet(root: &HostRoot) -> Option<Vec<String>> {
    let mut pids: Vec<u64> =
        std::fs::read_dir(root.path("/proc")).ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids.into_iter().find_map(|pid| {
        let comm = std::fs::read_to_string(root.path(&format!("/proc/{pid}/comm"))).ok()?;
        if comm.trim() != "kubelet" {
            return None;
        }
        let cmdline = std::fs::read(root.path(&format!("/proc/{pid}/cmdline"))).ok()?;
        let args: Vec<String> =
            cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        Some(args.into_iter().skip(1).collect())
    })
}

/// `--name=value`, `--name value` and a boolean `--name`, as the kubelet's
/// flag parser reads them (a boolean takes its value only after `=`); the
/// last of a repeated flag wins.
fn parse_flags(args: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let Some(flag) = args[i].strip_prefix("--").or_else(|| args[i].strip_prefix('-')) else {
            i += 1;
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None if matches!(flag_kind(flag), Flag::Bool) => (flag.to_string(), "true".to_string()),
            None => match args.get(i + 1).filter(|next| !next.starts_with('-')) {
                Some(next) => {
                    i += 1;
                    (flag.to_string(), next.clone())
                }
                None => (flag.to_string(), "true".to_string()),
            },
        };
        out.retain(|(n, _)| *n != name);
        out.push((name, value));
        i += 1;
    }
    out
}

/// A flag's value as the configuration field would hold it.
fn flag_value(kind: Flag, text: &str) -> Value {
    match kind {
        Flag::Bool => Value::Bool(!matches!(text.to_ascii_lowercase().as_str(), "false" | "0" | "f")),
        Flag::Int => text.parse::<i64>().map(|n| Value::Number(n.into())).unwrap_or_else(|_| Value::String(text.into())),
        Flag::Str => Value::String(text.into()),
        Flag::List => Value::Sequence(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect()),
        Flag::Map => Value::Mapping(
            text.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| {
                    let v = v.trim();
                    let v = match v {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => Value::String(v.into()),
                    };
                    (Value::String(k.trim().into()), v)
                })
                .collect(),
        ),
    }
}

/// Sets `keys` to `value` in `m`, over what is there (a map value merges
/// key by key, as feature gates do).
fn set_path(m: &mut Mapping, keys: &[&str], value: Value) {
    let Some((first, rest)) = keys.split_first() else { return };
    let key = Value::String(first.to_string());
    if rest.is_empty() {
        match (m.get_mut(&key), value) {
            (Some(Value::Mapping(existing)), Value::Mapping(new)) => existing.extend(new),
            (_, value) => {
                m.insert(key, value);
            }
        }
        return;
    }
    let child = m.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()));
    if !child.is_mapping() {
        *child = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(c) = child {
        set_path(c, rest, value);
    }
}

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let flags = running_kubelet(root).map(|args| parse_flags(&args)).unwrap_or_default();
    let named = flags.iter().find(|(n, _)| n == "config").map(|(_, v)| v.clone());
    let candidates: Vec<String> = named.iter().cloned().chain(CONFIG_FILES.iter().map(|s| s.to_string())).collect();
    let found = candidates.iter().find_map(|p| match root.read_to_string(p) {
        Ok(Some(text)) => Some((p.clone(), text)),
        _ => None,
    });
    if found.is_none() && flags.is_empty() {
        facts.set(&FactPath::new(["kubelet", "present"]), false);
        return;
    }
    facts.set(&FactPath::new(["kubelet", "present"]), true);
    if !flags.is_empty() {
        facts.set(&FactPath::new(["kubelet", "flags"]), flags.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    }
    let Some((path, text)) = found else {
        // Running without a file: the flags over their own defaults.
        let mut cfg = Mapping::new();
        for (keys, default) in FLAG_DEFAULTS {
            set_default(&mut cfg, keys, default);
        }
        apply_flags(&mut cfg, &flags, facts);
        for (keys, default) in DEFAULTS {
            set_default(&mut cfg, keys, default);
        }
        flatten(&mut vec!["kubelet".to_string(), "config".to_string()], &cfg, facts);
        super::files::collect(root, &NODE_FILES.iter().map(|s| s.to_string()).collect::<Vec<_>>(), facts);
        return;
    };
    let path = path.as_str();
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
    apply_flags(&mut cfg, &flags, facts);
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

/// The flags of [`FLAGS`] over `cfg`; `kubelet.overridden` names the
/// settings they decided.
fn apply_flags(cfg: &mut Mapping, flags: &[(String, String)], facts: &mut Facts) {
    let mut overridden = Vec::new();
    for (name, value) in flags {
        let Some((_, keys)) = FLAGS.iter().find(|(f, _)| f == name) else { continue };
        set_path(cfg, keys, flag_value(flag_kind(name), value));
        overridden.push(keys.join("."));
    }
    if !overridden.is_empty() {
        facts.set(&FactPath::new(["kubelet", "overridden"]), overridden);
    }
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

    /// CIS 4.2: a setting is what the running kubelet was given, the
    /// command line over the file.
    #[test]
    fn the_running_kubelets_flags_override_its_file() {
        let file = "authentication:\n  anonymous: {enabled: false}\nreadOnlyPort: 0\nfeatureGates: {RotateKubeletServerCertificate: true, Other: true}\n";
        let cmdline = "/usr/bin/kubelet\0--config=/etc/kubelet/custom.yaml\0--anonymous-auth=true\0--read-only-port\0\x310255\0--feature-gates=RotateKubeletServerCertificate=false\0--protect-kernel-defaults\0--tls-cipher-suites=A,B\0--v=2\0";
        let f = collect_with(
            &[
                ("/etc/kubelet/custom.yaml", file),
                ("/var/lib/kubelet/config.yaml", "readOnlyPort: 1\n"),
                ("/proc/77/comm", "containerd\n"),
                ("/proc/77/cmdline", "containerd\0--config=/var/lib/kubelet/config.yaml\0"),
                ("/proc/4242/comm", "kubelet\n"),
                ("/proc/4242/cmdline", cmdline),
            ],
            collect,
        );
        assert_eq!(f.0["kubelet.config_file"], "/etc/kubelet/custom.yaml".into(), "the file --config names");
        assert_eq!(f.0["kubelet.config.authentication.anonymous.enabled"], true.into());
        assert_eq!(f.0["kubelet.config.readOnlyPort"], 10255i64.into());
        assert_eq!(f.0["kubelet.config.featureGates.RotateKubeletServerCertificate"], false.into());
        assert_eq!(f.0["kubelet.config.featureGates.Other"], true.into(), "gates merge");
        assert_eq!(f.0["kubelet.config.protectKernelDefaults"], true.into());
        assert_eq!(f.0["kubelet.config.tlsCipherSuites"], vec!["A".to_string(), "B".to_string()].into());
        assert_eq!(f.0["kubelet.config.authorization.mode"], "Webhook".into(), "the file's defaults for the rest");
        let overridden = &f.0["kubelet.overridden"];
        assert_eq!(
            overridden,
            &vec![
                "authentication.anonymous.enabled".to_string(),
                "readOnlyPort".into(),
                "featureGates".into(),
                "protectKernelDefaults".into(),
                "tlsCipherSuites".into()
            ]
            .into()
        );
        let FactValue::List(flags) = &f.0["kubelet.flags"] else { panic!() };
        assert!(flags.contains(&"v".to_string()) && flags.contains(&"config".to_string()), "{flags:?}");

        // Without a file, the flags' own defaults: open.
        let f = collect_with(&[("/proc/9/comm", "kubelet\n"), ("/proc/9/cmdline", "kubelet\0--authorization-mode=Webhook\0")], collect);
        assert_eq!(f.0["kubelet.present"], true.into());
        assert_eq!(f.0["kubelet.config.authentication.anonymous.enabled"], true.into());
        assert_eq!(f.0["kubelet.config.readOnlyPort"], 10255i64.into());
        assert_eq!(f.0["kubelet.config.authorization.mode"], "Webhook".into());
        assert!(!f.0.contains_key("kubelet.config_file"));
    }

    #[test]
    fn flags_are_read_as_the_kubelets_parser_reads_them() {
        let args: Vec<String> = [
            "--anonymous-auth",
            "false",
            "--read-only-port",
            "0",
            "-v=3",
            "--client-ca-file",
            "/ca.crt",
            "--rotate-certificates=false",
            "--event-qps=0",
            "--read-only-port=7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let parsed = parse_flags(&args);
        let get = |n: &str| parsed.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("anonymous-auth"), Some("true"), "a boolean takes its value only after =");
        assert_eq!(get("read-only-port"), Some("7"), "the last one wins");
        assert_eq!(get("client-ca-file"), Some("/ca.crt"));
        assert_eq!(get("rotate-certificates"), Some("false"));
        assert_eq!(get("v"), Some("3"));
        assert_eq!(flag_value(Flag::Bool, "false"), Value::Bool(false));
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
