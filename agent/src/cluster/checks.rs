//! What the cluster agent keeps of each API object, and the `k8s.*` facts
//! built from it: for each check, the sorted list of offending objects
//! (`namespace/name`, or `name` for cluster-wide objects; empty when none),
//! the contract of `policies/kubernetes/cluster.yaml`.
//!
//! An object is reduced to a [`Summary`] (its findings) as it arrives, so
//! memory grows with the number of objects, not their size; only the
//! resources of `cluster.objects` also keep the object itself (trimmed,
//! see [`trimmed`]), shipped as `k8s.objects.<resource>[<key>]` for checks
//! written in CEL over its fields. Objects in
//! excluded namespaces (the system ones by default) are not reported. When
//! a resource could not be listed, its facts are left out (the controls
//! reading them become unknown rather than passing) and `k8s.errors` says
//! why.

use std::collections::{BTreeMap, BTreeSet};

use driftwatch_schemas::FactPath;
use serde_json::Value;

use crate::facts::Facts;

/// The resources the cluster agent follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pods,
    Namespaces,
    Nodes,
    ServiceAccounts,
    Secrets,
    NetworkPolicies,
    Ingresses,
    ClusterRoles,
    ClusterRoleBindings,
    Roles,
    RoleBindings,
}

/// Accept header of full objects.
pub const JSON: &str = "application/json";

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Pods,
        Kind::Namespaces,
        Kind::Nodes,
        Kind::ServiceAccounts,
        Kind::Secrets,
        Kind::NetworkPolicies,
        Kind::Ingresses,
        Kind::ClusterRoles,
        Kind::ClusterRoleBindings,
        Kind::Roles,
        Kind::RoleBindings,
    ];

    /// The resources followed: all of them, or without Secrets unless
    /// `secrets_metadata` is on (see `ClusterConfig::secrets_metadata`).
    pub fn followed(secrets_metadata: bool) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| secrets_metadata || *k != Kind::Secrets).collect()
    }

    /// The resource's name, as in its API path and `k8s.objects.<name>`.
    pub fn name(self) -> &'static str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    /// The collection's path on the API server (all namespaces).
    pub fn path(self) -> &'static str {
        match self {
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
            Kind::Nodes => "/api/v1/nodes",
            Kind::ServiceAccounts => "/api/v1/serviceaccounts",
            Kind::Secrets => "/api/v1/secrets",
            Kind::NetworkPolicies => "/apis/networking.k8s.io/v1/networkpolicies",
            Kind::Ingresses => "/apis/networking.k8s.io/v1/ingresses",
            Kind::ClusterRoles => "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            Kind::ClusterRoleBindings => "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Kind::Roles => "/apis/rbac.authorization.k8s.io/v1/roles",
            Kind::RoleBindings => "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        }
    }

    /// The Accept header of a list (`list = true`) or a watch. Secrets are
    /// only ever read as metadata: their data never reaches the agent.
    pub fn accept(self, list: bool) -> &'static str {
        match (self, list) {
            (Kind::Secrets, true) => "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            (Kind::Secrets, false) => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            _ => JSON,
        }
    }
}

/// What is kept of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub namespace: String,
    /// The checks this object fails (names of `k8s.<group>.<check>` facts).
    pub flags: BTreeSet<&'static str>,
    /// A value reported as is (a node's kubelet version).
    pub detail: String,
    /// The object itself as JSON ([`trimmed`]), for the resources of
    /// `cluster.objects`.
    pub object: Option<String>,
}

/// The key of an object: `namespace/name`, or `name`.
pub fn key(obj: &Value) -> String {
    let m = &obj["metadata"];
    let name = m["name"].as_str().unwrap_or_default();
    match m["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

fn flag_if(s: &mut Summary, cond: bool, name: &'static str) {
    if cond {
        s.flags.insert(name);
    }
}

/// Reduces an object of `kind` to its findings, keeping the object itself
/// too when `keep_object` (a finished pod's is not kept: it runs nothing).
pub fn summarize(kind: Kind, obj: &Value, keep_object: bool) -> Summary {
    let mut s = Summary { namespace: obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string(), ..Summary::default() };
    if keep_object && !(kind == Kind::Pods && finished(obj)) {
        s.object = Some(trimmed(obj).to_string());
    }
    match kind {
        Kind::Pods => pod(obj, &mut s),
        Kind::Namespaces => {
            let enforce = obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str();
            flag_if(&mut s, enforce.is_none_or(str::is_empty), "without_pss_enforce");
            s.namespace = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        }
        Kind::Nodes => {
            s.detail = obj["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap_or_default().to_string();
            let ready = obj["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
            flag_if(&mut s, !ready, "not_ready");
        }
        Kind::ServiceAccounts => {
            let automount = obj["automountServiceAccountToken"].as_bool().unwrap_or(true);
            flag_if(&mut s, obj["metadata"]["name"] == "default" && automount, "default_automount");
        }
        Kind::Secrets => {
            let legacy = obj["metadata"]["annotations"]["kubernetes.io/service-account.name"].is_string();
            flag_if(&mut s, legacy, "service_account_tokens");
        }
        Kind::NetworkPolicies => {
            let spec = &obj["spec"];
            let selects_all = spec["podSelector"].as_object().is_none_or(|m| m.is_empty() || m.values().all(is_empty));
            let types: Vec<&str> = spec["policyTypes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let ingress_rules = spec["ingress"].as_array().map_or(0, Vec::len);
            // Ingress is a policy type when listed, or when none is listed.
            let covers_ingress = types.is_empty() || types.contains(&"Ingress");
            flag_if(&mut s, selects_all && covers_ingress && ingress_rules == 0, "default_deny");
        }
        Kind::Ingresses => {
            flag_if(&mut s, obj["spec"]["tls"].as_array().is_none_or(Vec::is_empty), "without_tls");
        }
        Kind::ClusterRoles | Kind::Roles => {
            if !is_system(obj) {
                for rule in obj["rules"].as_array().into_iter().flatten() {
                    let verbs = strings(&rule["verbs"]);
                    let resources = strings(&rule["resources"]);
                    flag_if(&mut s, verbs.contains("*") || resources.contains("*"), "wildcard_roles");
                    let reads = ["get", "list", "watch", "*"].iter().any(|v| verbs.contains(*v));
                    let secrets = resources.contains("secrets") || resources.contains("*");
                    let core = strings(&rule["apiGroups"]);
                    flag_if(&mut s, reads && secrets && (core.contains("") || core.contains("*")), "secret_readers");
                }
            }
        }
        Kind::ClusterRoleBindings | Kind::RoleBindings => {
            let to_admin = obj["roleRef"]["kind"] == "ClusterRole" && obj["roleRef"]["name"] == "cluster-admin";
            let subjects: Vec<&str> = obj["subjects"].as_array().into_iter().flatten().filter_map(|x| x["name"].as_str()).collect();
            let system = is_system(obj) || (!subjects.is_empty() && subjects.iter().all(|n| n.starts_with("system:")));
            flag_if(&mut s, to_admin && !system, "cluster_admin_bindings");
        }
    }
    s
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn strings(v: &Value) -> BTreeSet<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Kubernetes' own objects: `system:` names, or the bootstrap defaults.
fn is_system(obj: &Value) -> bool {
    let m = &obj["metadata"];
    m["name"].as_str().is_some_and(|n| n.starts_with("system:")) || m["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
}

/// Whether a pod has finished (it runs nothing).
fn finished(obj: &Value) -> bool {
    matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// What is shipped of an object: everything but what changes without
/// anyone changing it, or repeats it (`status`, `metadata.managedFields`,
/// `resourceVersion`, `generation`, the `last-applied-configuration`
/// annotation). The values of environment variables whose names say they
/// are secrets are redacted here; the rest of the object is redacted as
/// every fact is, field by field, when shipped.
pub fn trimmed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["managedFields", "resourceVersion", "generation"] {
            meta.remove(field);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    redact_env(&mut o);
    o
}

/// Every `env` list below `v`: an entry whose name says it is a secret
/// keeps its name, not its value.
fn redact_env(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(env)) = m.get_mut("env") {
                for e in env.iter_mut() {
                    let secret = e["name"].as_str().is_some_and(crate::redact::is_secret_name);
                    if let (true, Some(value)) = (secret, e.get_mut("value")) {
                        *value = Value::String(crate::redact::MARKER.into());
                    }
                }
            }
            m.values_mut().for_each(redact_env);
        }
        Value::Array(a) => a.iter_mut().for_each(redact_env),
        _ => {}
    }
}

fn pod(obj: &Value, s: &mut Summary) {
    let spec = &obj["spec"];
    if finished(obj) {
        return; // finished pods run nothing
    }
    flag_if(s, spec["hostPID"] == true, "host_pid");
    flag_if(s, spec["hostIPC"] == true, "host_ipc");
    flag_if(s, spec["hostNetwork"] == true, "host_network");
    flag_if(s, spec["volumes"].as_array().into_iter().flatten().any(|v| v["hostPath"].is_object()), "host_path");
    let pod_sc = &spec["securityContext"];
    let groups = [("containers", true), ("initContainers", true), ("ephemeralContainers", false)];
    for (field, limited) in groups {
        for c in spec[field].as_array().into_iter().flatten() {
            let sc = &c["securityContext"];
            flag_if(s, sc["privileged"] == true, "privileged");
            flag_if(s, sc["allowPrivilegeEscalation"] != false, "privilege_escalation");
            let non_root = sc["runAsNonRoot"].as_bool().or(pod_sc["runAsNonRoot"].as_bool()).unwrap_or(false);
            let uid = sc["runAsUser"].as_i64().or(pod_sc["runAsUser"].as_i64());
            flag_if(s, !non_root && uid.is_none_or(|u| u == 0), "run_as_root");
            flag_if(s, sc["capabilities"]["add"].as_array().is_some_and(|a| !a.is_empty()), "added_capabilities");
            flag_if(s, sc["readOnlyRootFilesystem"] != true, "writable_root_fs");
            if limited {
                let limits = &c["resources"]["limits"];
                flag_if(s, !(limits["cpu"].is_string() || limits["cpu"].is_number()) || !limits["memory"].is_string(), "no_limits");
            }
            let image = c["image"].as_str().unwrap_or_default();
            let (name, digest) = match image.split_once('@') {
                Some((n, d)) => (n, !d.is_empty()),
                None => (image, false),
            };
            // A tag follows the last ':' after the last '/' (a registry may have a port).
            let tag = name.rsplit('/').next().and_then(|last| last.split_once(':')).map(|(_, t)| t);
            flag_if(s, !digest && tag.is_none_or(|t| t == "latest"), "latest_image");
            flag_if(s, !digest, "unpinned_image");
        }
    }
}

/// The pod checks: `k8s.pods.<check>` lists the pods failing each.
pub const POD_CHECKS: [&str; 12] = [
    "privileged",
    "host_pid",
    "host_ipc",
    "host_network",
    "host_path",
    "privilege_escalation",
    "run_as_root",
    "added_capabilities",
    "writable_root_fs",
    "no_limits",
    "latest_image",
    "unpinned_image",
];

/// The objects of every resource, by key, and why a resource is missing.
#[derive(Debug, Default)]
pub struct Store {
    pub objects: BTreeMap<Kind, BTreeMap<String, Summary>>,
    pub errors: BTreeMap<Kind, String>,
}

/// What the facts of a store report: the cluster agent's settings.
pub struct Reporting<'a> {
    /// Namespaces not reported.
    pub exclude: &'a [String],
    /// Resources whose objects are reported whole, in this order.
    pub objects: &'a [Kind],
    /// The most bytes of objects, all resources together.
    pub objects_max_bytes: usize,
}

/// The facts of a store.
pub fn facts(store: &Store, r: &Reporting) -> Facts {
    let exclude = r.exclude;
    let mut facts = Facts::default();
    let excluded = |ns: &str| exclude.iter().any(|e| e == ns);
    let listed = |k: Kind| store.objects.get(&k).filter(|_| !store.errors.contains_key(&k));
    // k8s.<group>.<flag> = keys of the objects of `kinds` with the flag.
    let report = |group: &str, kinds: &[Kind], flags: &[&'static str], facts: &mut Facts| {
        let sets: Option<Vec<&BTreeMap<String, Summary>>> = kinds.iter().map(|k| listed(*k)).collect();
        let Some(sets) = sets else { return };
        for flag in flags {
            let keys: Vec<String> = sets
                .iter()
                .flat_map(|m| m.iter())
                .filter(|(_, s)| s.flags.contains(flag) && !excluded(&s.namespace))
                .map(|(k, _)| k.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            facts.set(&FactPath::new(["k8s", group, flag]), keys);
        }
    };
    report("pods", &[Kind::Pods], &POD_CHECKS, &mut facts);
    report("namespaces", &[Kind::Namespaces], &["without_pss_enforce"], &mut facts);
    report("serviceaccounts", &[Kind::ServiceAccounts], &["default_automount"], &mut facts);
    report("secrets", &[Kind::Secrets], &["service_account_tokens"], &mut facts);
    report("ingresses", &[Kind::Ingresses], &["without_tls"], &mut facts);
    report("nodes", &[Kind::Nodes], &["not_ready"], &mut facts);
    report("rbac", &[Kind::ClusterRoles, Kind::Roles], &["wildcard_roles", "secret_readers"], &mut facts);
    report("rbac", &[Kind::ClusterRoleBindings, Kind::RoleBindings], &["cluster_admin_bindings"], &mut facts);

    if let (Some(namespaces), Some(policies)) = (listed(Kind::Namespaces), listed(Kind::NetworkPolicies)) {
        let denied: BTreeSet<&str> = policies.values().filter(|s| s.flags.contains("default_deny")).map(|s| s.namespace.as_str()).collect();
        let open: Vec<String> = namespaces.keys().filter(|ns| !excluded(ns) && !denied.contains(ns.as_str())).cloned().collect();
        facts.set(&FactPath::new(["k8s", "network", "namespaces_without_default_deny"]), open);
    }
    for (kind, group) in [(Kind::Pods, "pods"), (Kind::Namespaces, "namespaces"), (Kind::Nodes, "nodes"), (Kind::Secrets, "secrets")] {
        if let Some(m) = listed(kind) {
            let n = m.values().filter(|s| kind == Kind::Nodes || kind == Kind::Namespaces || !excluded(&s.namespace)).count();
            facts.set(&FactPath::new(["k8s", group, "count"]), n as i64);
        }
    }
    if let Some(nodes) = listed(Kind::Nodes) {
        let versions: BTreeSet<String> = nodes.values().map(|s| s.detail.clone()).filter(|v| !v.is_empty()).collect();
        facts.set(&FactPath::new(["k8s", "nodes", "kubelet_versions"]), versions.into_iter().collect::<Vec<_>>());
    }
    // k8s.objects.<resource>[<key>] = the object, each resource whole or
    // not at all.
    let mut budget = r.objects_max_bytes;
    for &kind in r.objects {
        let Some(m) = listed(kind) else { continue };
        let objects: Vec<(&String, &String)> =
            m.iter().filter(|(_, s)| !excluded(&s.namespace)).filter_map(|(k, s)| Some((k, s.object.as_ref()?))).collect();
        let bytes: usize = objects.iter().map(|(k, o)| k.len() + o.len()).sum();
        if bytes > budget {
            facts.error(
                "k8s",
                format!(
                    "k8s.objects.{}: {} objects of {bytes} bytes do not fit the {budget} left of cluster.objects_max_bytes; left out",
                    kind.name(),
                    objects.len()
                ),
            );
            continue;
        }
        budget -= bytes;
        for (key, object) in objects {
            facts.set(&FactPath::new(["k8s", "objects", kind.name(), key.as_str()]), object.clone());
        }
    }
    if !store.errors.is_empty() {
        for (kind, e) in &store.errors {
            facts.error("k8s", format!("{}: {e}", kind.path()));
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use driftwatch_schemas::FactValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_risky_pod_fails_every_pod_check_and_a_hardened_one_none() {
        let risky = json!({"metadata": {"name": "p", "namespace": "app"}, "spec": {
            "hostPID": true, "hostIPC": true, "hostNetwork": true,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "registry:5000/team/app", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}]
        }});
        let s = summarize(Kind::Pods, &risky, false);
        for f in POD_CHECKS {
            assert!(s.flags.contains(f), "{f}: {s:?}");
        }
        let hardened = json!({"metadata": {"name": "q", "namespace": "app"}, "spec": {
            "securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "image": "registry:5000/team/app:1.2@sha256:abc", "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}}]
        }});
        assert_eq!(summarize(Kind::Pods, &hardened, false).flags, BTreeSet::new());
        let done = json!({"metadata": {"name": "r"}, "spec": {"hostPID": true}, "status": {"phase": "Succeeded"}});
        assert!(summarize(Kind::Pods, &done, false).flags.is_empty());
    }

    #[test]
    fn rbac_flags_skip_kubernetes_own_objects() {
        let admin_binding = json!({"metadata": {"name": "ops-admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "alice"}]});
        assert!(summarize(Kind::ClusterRoleBindings, &admin_binding, false).flags.contains("cluster_admin_bindings"));
        let masters = json!({"metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "Group", "name": "system:masters"}]});
        assert!(summarize(Kind::ClusterRoleBindings, &masters, false).flags.is_empty());
        let wild = json!({"metadata": {"name": "ci"}, "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]});
        assert_eq!(summarize(Kind::ClusterRoles, &wild, false).flags, BTreeSet::from(["wildcard_roles", "secret_readers"]));
        let builtin = json!({"metadata": {"name": "admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        assert!(summarize(Kind::ClusterRoles, &builtin, false).flags.is_empty());
    }

    #[test]
    fn facts_list_offenders_and_leave_out_what_was_not_listed() {
        let mut store = Store::default();
        for kind in Kind::ALL {
            store.objects.insert(kind, BTreeMap::new());
        }
        let add = |store: &mut Store, kind: Kind, obj: Value| {
            store.objects.get_mut(&kind).unwrap().insert(key(&obj), summarize(kind, &obj, false));
        };
        add(&mut store, Kind::Namespaces, json!({"metadata": {"name": "app"}}));
        add(
            &mut store,
            Kind::Namespaces,
            json!({"metadata": {"name": "web", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
        );
        add(&mut store, Kind::Namespaces, json!({"metadata": {"name": "kube-system"}}));
        add(
            &mut store,
            Kind::NetworkPolicies,
            json!({"metadata": {"name": "deny", "namespace": "web"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        );
        add(
            &mut store,
            Kind::NetworkPolicies,
            json!({"metadata": {"name": "allow", "namespace": "app"}, "spec": {"podSelector": {}, "ingress": [{}]}}),
        );
        add(&mut store, Kind::Pods, json!({"metadata": {"name": "proxy", "namespace": "kube-system"}, "spec": {"hostNetwork": true}}));
        store.errors.insert(Kind::Ingresses, "HTTP 403: forbidden".into());
        let exclude = ["kube-system".to_string()];
        let f = facts(&store, &Reporting { exclude: &exclude, objects: &[], objects_max_bytes: 0 });
        assert_eq!(f.0["k8s.namespaces.without_pss_enforce"], vec!["app".to_string()].into());
        assert_eq!(f.0["k8s.network.namespaces_without_default_deny"], vec!["app".to_string()].into());
        assert_eq!(f.0["k8s.pods.host_network"], Vec::<String>::new().into(), "system namespaces are not reported");
        assert!(!f.0.contains_key("k8s.ingresses.without_tls"), "not listed: left out");
        assert!(matches!(&f.0["k8s.errors"], driftwatch_schemas::FactValue::List(e) if e[0].contains("ingresses: HTTP 403")));
    }

    #[test]
    fn objects_are_shipped_trimmed_redacted_and_whole_or_not_at_all() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "app", "resourceVersion": "7", "generation": 2,
                         "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "web"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "web", "image": "web:1",
                     "env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "LOG_LEVEL", "value": "info"},
                             {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.7"}
        });
        let t = trimmed(&pod);
        assert!(t.get("status").is_none());
        assert_eq!(t["metadata"]["annotations"], json!({"team": "web"}));
        for gone in ["managedFields", "resourceVersion", "generation"] {
            assert!(t["metadata"].get(gone).is_none(), "{gone}");
        }
        let env = &t["spec"]["containers"][0]["env"];
        assert_eq!(env[0], json!({"name": "DB_PASSWORD", "value": crate::redact::MARKER}));
        assert_eq!(env[1], json!({"name": "LOG_LEVEL", "value": "info"}));
        assert_eq!(env[2]["valueFrom"]["secretKeyRef"]["name"], "api", "a reference is not a secret");
        assert_eq!(t["spec"]["hostNetwork"], true);

        let mut store = Store::default();
        let add = |store: &mut Store, kind: Kind, obj: Value| {
            store.objects.entry(kind).or_default().insert(key(&obj), summarize(kind, &obj, true));
        };
        add(&mut store, Kind::Pods, pod);
        add(&mut store, Kind::Pods, json!({"metadata": {"name": "proxy", "namespace": "kube-system"}, "spec": {}}));
        add(&mut store, Kind::Pods, json!({"metadata": {"name": "job", "namespace": "app"}, "status": {"phase": "Succeeded"}}));
        add(&mut store, Kind::Namespaces, json!({"metadata": {"name": "app"}}));
        let exclude = ["kube-system".to_string()];
        let kinds = [Kind::Pods, Kind::Namespaces];
        let f = facts(&store, &Reporting { exclude: &exclude, objects: &kinds, objects_max_bytes: 1 << 20 });
        let objects: Vec<&String> = f.0.keys().filter(|k| k.starts_with("k8s.objects.")).collect();
        assert_eq!(objects, ["k8s.objects.namespaces.app", r#"k8s.objects.pods["app/web"]"#], "excluded and finished pods left out");
        let FactValue::Str(web) = &f.0[r#"k8s.objects.pods["app/web"]"#] else { panic!("a JSON text") };
        assert_eq!(serde_json::from_str::<Value>(web).unwrap(), t);
        assert!(FactPath::parse(r#"k8s.objects.pods["app/web"]"#).unwrap().is_json_object());

        // Pods do not fit what is left after namespaces: left out whole.
        let small = f.0["k8s.objects.namespaces.app"].to_json().len();
        let kinds = [Kind::Namespaces, Kind::Pods];
        let f = facts(&store, &Reporting { exclude: &exclude, objects: &kinds, objects_max_bytes: small + 20 });
        assert!(f.0.contains_key("k8s.objects.namespaces.app"));
        assert!(!f.0.keys().any(|k| k.starts_with("k8s.objects.pods")), "no part of a resource");
        let FactValue::List(errors) = &f.0["k8s.errors"] else { panic!("errors") };
        assert!(errors[0].contains("k8s.objects.pods: 1 objects of") && errors[0].contains("cluster.objects_max_bytes"), "{errors:?}");
    }
}
