//! Kubernetes API-server audit log lines (JSON, one `audit.k8s.io/v1`
//! Event per line) into audit events: action `k8s_<verb>`, the object as
//! `resource[/subresource] namespace/name` (e.g. `secrets kube-system/token`),
//! the user and groups, the response code as the outcome (< 400 success),
//! the first source IP. Events at stage other than `ResponseComplete` /
//! `Panic` are skipped by the caller's choice ([`is_final`]).

use chrono::{DateTime, Utc};
use driftwatch_schemas::Outcome;
use serde::Deserialize;

use super::authlog::Parsed;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Event {
    audit_i_d: String,
    stage: String,
    verb: String,
    request_u_r_i: String,
    user: User,
    impersonated_user: Option<User>,
    source_i_ps: Vec<String>,
    user_agent: String,
    object_ref: Option<ObjectRef>,
    response_status: Option<Status>,
    stage_timestamp: Option<DateTime<Utc>>,
    request_received_timestamp: Option<DateTime<Utc>>,
    /// Present at the `Request` / `RequestResponse` audit levels.
    request_object: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct User {
    username: String,
    groups: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ObjectRef {
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
    api_group: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: i64,
}

/// Whether the line is a final-stage event (the one to ship). Lines that
/// don't parse count as final, so they are shipped as unparsed.
pub fn is_final(line: &str) -> bool {
    match serde_json::from_str::<Event>(line) {
        Ok(e) => matches!(e.stage.as_str(), "ResponseComplete" | "Panic" | ""),
        Err(_) => true,
    }
}

pub fn parse(line: &str) -> Parsed {
    let mut p = Parsed::empty();
    let e: Event = match serde_json::from_str(line) {
        Ok(e) => e,
        Err(err) => {
            p.extra.insert("parse_error".into(), format!("not a Kubernetes audit event: {err}"));
            return p;
        }
    };
    p.timestamp = e.stage_timestamp.or(e.request_received_timestamp);
    p.action = format!("k8s_{}", if e.verb.is_empty() { "unknown" } else { &e.verb });
    p.actor.user = Some(e.user.username).filter(|u| !u.is_empty());
    p.actor.groups = e.user.groups;
    p.source_address = e.source_i_ps.into_iter().next();
    if let Some(o) = e.object_ref {
        let res = if o.subresource.is_empty() { o.resource.clone() } else { format!("{}/{}", o.resource, o.subresource) };
        let target = match (o.namespace.is_empty(), o.name.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!(" {}", o.name),
            (false, true) => format!(" {}/", o.namespace),
            (false, false) => format!(" {}/{}", o.namespace, o.name),
        };
        p.object = Some(format!("{res}{target}"));
        for (k, v) in [
            ("resource", o.resource),
            ("subresource", o.subresource),
            ("namespace", o.namespace),
            ("name", o.name),
            ("api_group", o.api_group),
        ] {
            if !v.is_empty() {
                p.extra.insert(k.into(), v);
            }
        }
    } else if !e.request_u_r_i.is_empty() {
        p.object = Some(e.request_u_r_i.clone());
    }
    if let Some(s) = e.response_status {
        p.outcome = if s.code > 0 && s.code < 400 { Outcome::Success } else { Outcome::Failure };
        p.extra.insert("response_code".into(), s.code.to_string());
    }
    if let Some(obj) = &e.request_object {
        request_object_facts(obj, &mut p.extra);
    }
    if let Some(i) = e.impersonated_user {
        p.extra.insert("impersonated_user".into(), i.username);
    }
    for (k, v) in [("audit_id", e.audit_i_d), ("user_agent", e.user_agent), ("request_uri", e.request_u_r_i)] {
        if !v.is_empty() {
            p.extra.insert(k.into(), v);
        }
    }
    p
}

/// What detections need from a created or updated object, as `extra`
/// fields: a workload's pod security settings (`privileged`,
/// `host_namespaces`, `host_path`, `added_capabilities`, each only when
/// present) and a binding's `role_ref` (`ClusterRole/cluster-admin`).
fn request_object_facts(obj: &serde_json::Value, extra: &mut std::collections::BTreeMap<String, String>) {
    // A Pod has its spec at `spec`; Deployments, DaemonSets, Jobs… at
    // `spec.template.spec`; CronJobs one level deeper.
    let spec = [
        obj.pointer("/spec/jobTemplate/spec/template/spec"),
        obj.pointer("/spec/template/spec"),
        obj.get("spec").filter(|s| s.get("containers").is_some()),
    ]
    .into_iter()
    .flatten()
    .next();
    if let Some(spec) = spec {
        let containers: Vec<&serde_json::Value> = ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .filter_map(|k| spec.get(*k).and_then(|c| c.as_array()))
            .flatten()
            .collect();
        let name = |c: &serde_json::Value| c.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_string();
        let privileged: Vec<String> = containers
            .iter()
            .filter(|c| c.pointer("/securityContext/privileged").and_then(|v| v.as_bool()) == Some(true))
            .map(|c| name(c))
            .collect();
        if !privileged.is_empty() {
            extra.insert("privileged".into(), privileged.join(","));
        }
        let host: Vec<&str> =
            ["hostNetwork", "hostPID", "hostIPC"].into_iter().filter(|k| spec.get(*k).and_then(|v| v.as_bool()) == Some(true)).collect();
        if !host.is_empty() {
            extra.insert("host_namespaces".into(), host.join(","));
        }
        let host_paths: Vec<&str> = spec
            .get("volumes")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.pointer("/hostPath/path").and_then(|p| p.as_str()))
            .collect();
        if !host_paths.is_empty() {
            extra.insert("host_path".into(), host_paths.join(","));
        }
        let caps: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.pointer("/securityContext/capabilities/add").and_then(|a| a.as_array()))
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        if !caps.is_empty() {
            extra.insert("added_capabilities".into(), caps.join(","));
        }
    }
    if let (Some(kind), Some(name)) =
        (obj.pointer("/roleRef/kind").and_then(|v| v.as_str()), obj.pointer("/roleRef/name").and_then(|v| v.as_str()))
    {
        extra.insert("role_ref".into(), format!("{kind}/{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5e5a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/secrets/bootstrap-token","verb":"get","user":{"username":"system:serviceaccount:default:app","uid":"1","groups":["system:serviceaccounts","system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.30","objectRef":{"resource":"secrets","namespace":"kube-system","name":"bootstrap-token","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-22T10:00:00.100000Z","stageTimestamp":"2026-11-22T10:00:00.123456Z"}"#;

    #[test]
    fn secret_read_by_a_service_account() {
        let p = parse(SECRET_GET);
        assert_eq!(p.action, "k8s_get");
        assert_eq!(p.object.as_deref(), Some("secrets kube-system/bootstrap-token"));
        assert_eq!(p.actor.user.as_deref(), Some("system:serviceaccount:default:app"));
        assert_eq!(p.actor.groups, vec!["system:serviceaccounts", "system:authenticated"]);
        assert_eq!((p.outcome, p.source_address.as_deref()), (Outcome::Success, Some("10.0.0.7")));
        assert_eq!(p.timestamp.unwrap().timestamp_subsec_millis(), 123);
        assert_eq!(p.extra["response_code"], "200");
    }

    #[test]
    fn forbidden_create_of_a_pod_exec_and_stages() {
        let line = r#"{"stage":"ResponseComplete","verb":"create","user":{"username":"eve"},"objectRef":{"resource":"pods","subresource":"exec","namespace":"prod","name":"db-0"},"responseStatus":{"code":403}}"#;
        let p = parse(line);
        assert_eq!((p.action.as_str(), p.object.as_deref(), p.outcome), ("k8s_create", Some("pods/exec prod/db-0"), Outcome::Failure));
        assert!(!is_final(&line.replace("ResponseComplete", "RequestReceived")));
        assert!(is_final(line));
        assert!(is_final("{not json"));
        assert!(parse("{not json").extra["parse_error"].starts_with("not a Kubernetes audit event"));
    }

    #[test]
    fn pod_security_and_role_refs_from_the_request_object() {
        let pod = r#"{"stage":"ResponseComplete","verb":"create","user":{"username":"dev"},"objectRef":{"resource":"pods","namespace":"prod","name":"x"},"responseStatus":{"code":201},
            "requestObject":{"kind":"Pod","spec":{"hostPID":true,"containers":[{"name":"a","securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}},{"name":"b"}],
            "volumes":[{"name":"root","hostPath":{"path":"/"}}]}}}"#;
        let p = parse(&pod.replace('\n', ""));
        assert_eq!(p.extra["privileged"], "a");
        assert_eq!(p.extra["host_namespaces"], "hostPID");
        assert_eq!(p.extra["host_path"], "/");
        assert_eq!(p.extra["added_capabilities"], "SYS_ADMIN");
        let deploy = r#"{"verb":"create","objectRef":{"resource":"deployments"},"requestObject":{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}}"#;
        assert_eq!(parse(deploy).extra["privileged"], "c");
        let binding = r#"{"verb":"create","objectRef":{"resource":"clusterrolebindings"},"requestObject":{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"}]}}"#;
        assert_eq!(parse(binding).extra["role_ref"], "ClusterRole/cluster-admin");
        assert!(!parse(SECRET_GET).extra.contains_key("privileged"));
    }
}
