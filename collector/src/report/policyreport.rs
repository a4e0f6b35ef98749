//! Kubernetes findings as the Policy WG's reports (`wgpolicyk8s.io/v1alpha2`
//! `PolicyReport` and `ClusterPolicyReport`), what Policy Reporter, Kyverno
//! and Trivy users already read: `driftwatch-collector evaluate --format
//! policyreport` on a cluster snapshot prints a `v1` `List` for
//! `kubectl apply -f -`.
//!
//! Each control is a policy; a failing one names the objects the cluster
//! agent listed (its evidence: `namespace/name` keys of pods, roles,
//! bindings…): their results go into the `PolicyReport` of their namespace,
//! those about cluster-scoped objects (or about none) into the
//! `ClusterPolicyReport`. Pass, error (and missing evidence) and skip (not
//! applicable, waived) are reported as such.
//!
//! [`stored`] renders the same reports live from what the store holds of
//! every cluster the cluster agents report (`GET /api/v1/policyreports`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::eval::{Evaluation, Status};
use crate::policy::PolicySet;
use crate::store::prelude::*;
use crate::store::StoreError;

/// The report's name prefix and `source`.
const SOURCE: &str = "driftwatch";

/// The objects a cluster fact lists: (apiVersion, kind of a cluster-scoped
/// key, kind of a `namespace/name` key), by the fact's path.
fn kinds(path: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let group = path.strip_prefix("k8s.")?.split('.').next()?;
    Some(match (group, path) {
        (_, "k8s.pods.count" | "k8s.namespaces.count" | "k8s.nodes.count" | "k8s.secrets.count" | "k8s.nodes.kubelet_versions") => {
            return None
        }
        ("pods", _) => ("v1", "Pod", "Pod"),
        ("namespaces", _) | ("network", "k8s.network.namespaces_without_default_deny") => ("v1", "Namespace", "Namespace"),
        ("serviceaccounts", _) => ("v1", "ServiceAccount", "ServiceAccount"),
        ("secrets", _) => ("v1", "Secret", "Secret"),
        ("nodes", _) => ("v1", "Node", "Node"),
        ("ingresses", _) => ("networking.k8s.io/v1", "Ingress", "Ingress"),
        ("rbac", "k8s.rbac.cluster_admin_bindings") => ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "RoleBinding"),
        ("rbac", _) => ("rbac.authorization.k8s.io/v1", "ClusterRole", "Role"),
        _ => return None,
    })
}

/// The object references in a result's evidence, by namespace (`None`:
/// cluster-scoped).
fn resources(e: &Evaluation) -> BTreeMap<Option<String>, Vec<Value>> {
    let mut out: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for (path, value) in &e.evidence {
        let (Some((api_version, cluster_kind, namespaced_kind)), driftwatch_schemas::FactValue::List(keys)) = (kinds(path), value) else {
            continue;
        };
        for key in keys {
            match key.split_once('/') {
                Some((ns, name)) => out
                    .entry(Some(ns.to_string()))
                    .or_default()
                    .push(json!({"apiVersion": api_version, "kind": namespaced_kind, "namespace": ns, "name": name})),
                None => out.entry(None).or_default().push(json!({"apiVersion": api_version, "kind": cluster_kind, "name": key})),
            }
        }
    }
    out
}

fn result_of(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Fail => "fail",
        Status::Error | Status::Unknown => "error",
        Status::NotApplicable | Status::Waived => "skip",
    }
}

/// The reports for `results` of cluster `cluster`, as a `v1` `List`.
pub fn render(results: &[Evaluation], policies: &PolicySet, cluster: &str) -> Value {
    // Namespace (None: the cluster) → results.
    let mut reports: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for e in results {
        let control = policies.get(&e.control_id).map(|(_, c)| &c.control);
        let fix = control.map(|c| c.fix_line()).unwrap_or_default();
        let mut message = e.title.clone();
        if let Some(m) = &e.message {
            message += &format!(": {m}");
        }
        if e.status == Status::Fail && !fix.is_empty() {
            message += &format!(". Fix: {fix}");
        }
        let timestamp = json!({"seconds": e.evaluated_at.timestamp(), "nanos": e.evaluated_at.timestamp_subsec_nanos()});
        let mut base = json!({
            "policy": e.control_id,
            "source": SOURCE,
            "result": result_of(e.status),
            "severity": e.severity.as_str(),
            "category": control.and_then(|c| c.frameworks.keys().next().cloned()).unwrap_or_default(),
            "message": message,
            "timestamp": timestamp,
            "properties": {"requirements": e.frameworks.ids.join(","), "asset": e.asset_id, "snapshot": e.snapshot_id},
        });
        if e.status == Status::Waived {
            base["properties"]["waived"] = json!("true");
        }
        let by_namespace = if e.status == Status::Fail { resources(e) } else { BTreeMap::new() };
        if by_namespace.is_empty() {
            reports.entry(None).or_default().push(base);
            continue;
        }
        for (ns, refs) in by_namespace {
            let mut r = base.clone();
            r["resources"] = Value::Array(refs);
            reports.entry(ns).or_default().push(r);
        }
    }
    let items: Vec<Value> = reports
        .into_iter()
        .map(|(ns, results)| {
            let mut summary = json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0});
            for r in &results {
                if let Some(k) = r["result"].as_str() {
                    summary[k] = json!(summary[k].as_u64().unwrap_or(0) + 1);
                }
            }
            let labels = json!({"app.kubernetes.io/managed-by": SOURCE, "driftwatch.io/cluster": label_value(cluster)});
            match ns {
                Some(ns) => json!({
                    "apiVersion": "wgpolicyk8s.io/v1alpha2",
                    "kind": "PolicyReport",
                    "metadata": {"name": format!("{SOURCE}-{}", name_part(cluster)), "namespace": ns, "labels": labels},
                    "summary": summary,
                    "results": results,
                }),
                None => json!({
                    "apiVersion": "wgpolicyk8s.io/v1alpha2",
                    "kind": "ClusterPolicyReport",
                    "metadata": {"name": format!("{SOURCE}-{}", name_part(cluster)), "labels": labels},
                    "summary": summary,
                    "results": results,
                }),
            }
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `s` as the part of an object name (RFC 1123: lower-case alphanumerics
/// and `-`, at most 253 characters with the prefix).
fn name_part(s: &str) -> String {
    let mut out: String = s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(200).collect();
    out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "cluster".into()
    } else {
        out
    }
}

/// `s` as a label value (at most 63 characters of alphanumerics, `-`, `_`,
/// `.`, starting and ending alphanumeric).
fn label_value(s: &str) -> String {
    let v: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(63).collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// The reports of every cluster asset (or of `cluster` only) from the
/// latest stored result of each control that applies to it, as one `v1`
/// `List`: what the live view and `kubectl` read without an offline
/// evaluation.
pub async fn stored(
    store: &SharedStore,
    policies: &PolicySet,
    cluster: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, StoreError> {
    let kind = driftwatch_schemas::AssetKind::K8sCluster;
    let clusters = store.assets().await?.into_iter().filter(|a| a.kind == kind.as_str() && cluster.is_none_or(|c| a.asset_id == c));
    let mut items = Vec::new();
    for a in clusters {
        let mut results = Vec::new();
        for c in policies.controls.iter().filter(|c| c.attest.is_none() && c.applies_to(kind, &a.labels)) {
            let Some(row) = store.evaluation_at(&a.asset_id, &c.control.id, now).await? else { continue };
            let Some(status) = Status::parse(&row.status) else { continue };
            results.push(Evaluation {
                asset_id: a.asset_id.clone(),
                control_id: c.control.id.clone(),
                title: c.control.title.clone(),
                severity: c.control.severity,
                status,
                frameworks: c.frameworks.clone(),
                // Written by this program; unreadable evidence names no object.
                evidence: serde_json::from_str(&row.evidence).unwrap_or_default(),
                message: Some(row.message).filter(|m| !m.is_empty()),
                evaluated_at: crate::store::time(row.at),
                snapshot_id: row.snapshot_id,
                sequence: row.sequence,
                checked: Some(status),
            });
        }
        if let Some(list) = render(&results, policies, &a.asset_id).get_mut("items").and_then(Value::as_array_mut) {
            items.append(list);
        }
    }
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    fn policies() -> PolicySet {
        let text = "pack: k\ncontrols:\n  - {id: k8s.pods.no_privileged, title: No privileged pods, severity: critical, check: 'size(k8s.pods.privileged) == 0', remediation: Drop privileged.,  frameworks: {cis: [Kubernetes 1.9 5.2.2]}}\n  - {id: k8s.rbac.no_wildcards, title: No wildcard roles, severity: high, check: 'size(k8s.rbac.wildcard_roles) == 0', frameworks: {soc2: [CC6.3]}}\n  - {id: k8s.ns.pss, title: PSS enforced, severity: medium, check: 'size(k8s.namespaces.without_pss_enforce) == 0', frameworks: {soc2: [CC6.1]}}\n";
        PolicySet::new(crate::policy::load_text(std::path::Path::new("k.yaml"), text).unwrap())
    }

    fn evaluation(p: &PolicySet, id: &str, status: Status, path: &'static str, keys: &[&str]) -> Evaluation {
        super::super::evaluation(p, id, status, [(path, FactValue::List(keys.iter().map(|k| k.to_string()).collect()))])
    }

    #[test]
    fn failing_objects_land_in_their_namespace_and_the_rest_in_the_cluster_report() {
        let p = policies();
        let results = vec![
            evaluation(&p, "k8s.pods.no_privileged", Status::Fail, "k8s.pods.privileged", &["shop/web-1", "kube-public/x", "shop/web-2"]),
            evaluation(&p, "k8s.rbac.no_wildcards", Status::Fail, "k8s.rbac.wildcard_roles", &["admin-all", "shop/editor"]),
            evaluation(&p, "k8s.ns.pss", Status::Pass, "k8s.namespaces.without_pss_enforce", &[]),
        ];
        let list = render(&results, &p, "Prod EU");
        assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("v1"), Some("List")));
        let items = list["items"].as_array().unwrap();
        let find = |kind: &str, ns: Option<&str>| {
            items
                .iter()
                .find(|i| i["kind"] == kind && i["metadata"]["namespace"].as_str() == ns)
                .unwrap_or_else(|| panic!("{kind} {ns:?}: {list:#}"))
        };
        let shop = find("PolicyReport", Some("shop"));
        assert_eq!(shop["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(shop["metadata"]["name"], "driftwatch-prod-eu");
        assert_eq!(shop["summary"]["fail"], 2);
        let pods = shop["results"].as_array().unwrap().iter().find(|r| r["policy"] == "k8s.pods.no_privileged").unwrap();
        assert_eq!(pods["resources"].as_array().unwrap().len(), 2);
        assert_eq!(pods["resources"][0], json!({"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web-1"}));
        assert_eq!(pods["severity"], "critical");
        assert!(pods["message"].as_str().unwrap().ends_with("Fix: Drop privileged."), "{pods}");
        let role = shop["results"].as_array().unwrap().iter().find(|r| r["policy"] == "k8s.rbac.no_wildcards").unwrap();
        assert_eq!(role["resources"][0]["kind"], "Role");
        let cluster = find("ClusterPolicyReport", None);
        assert!(cluster["metadata"].get("namespace").is_none());
        assert_eq!((cluster["summary"]["pass"].as_u64(), cluster["summary"]["fail"].as_u64()), (Some(1), Some(1)));
        let cluster_role = cluster["results"].as_array().unwrap().iter().find(|r| r["result"] == "fail").unwrap();
        assert_eq!(
            cluster_role["resources"][0],
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": "admin-all"})
        );
        assert_eq!(cluster["metadata"]["labels"]["driftwatch.io/cluster"], "Prod_EU");
        assert_eq!(find("PolicyReport", Some("kube-public"))["summary"]["fail"], 1);
        assert!(cluster["results"][0]["timestamp"]["seconds"].as_i64().unwrap() > 0);
    }
}
