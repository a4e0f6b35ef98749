//! The cluster agent against a Kubernetes API server replayed over HTTPS
//! (`tests/fixtures/k8s/`): it lists every resource (pods in two pages,
//! secrets as metadata only, with the service account's bearer token),
//! ships the `k8s.*` facts as a full snapshot of a `k8s-cluster` asset,
//! lists again when a watch expires (410), and sends a delta within
//! seconds when a watch reports a change. The pods and namespaces are also
//! shipped whole (`cluster.objects`), and checks in CEL over their fields
//! judge them.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use driftwatch_schemas::{ConfigSnapshot, Decoder, FactValue, Message, SnapshotKind, Stream};
use driftwatch_tests::{bin, create_topics, repo, services_up, unique, wait_for, Names, Proc, BROKERS};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message as _};
use tokio::sync::Notify;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token";

/// The replaying API server's state.
#[derive(Default)]
struct Replay {
    dir: PathBuf,
    /// Each request: path and query, Accept header.
    requests: Mutex<Vec<(String, String)>>,
    /// Watch streams whose events were released by the test.
    released: Mutex<BTreeSet<String>>,
    /// Watch streams already replayed (later watches stay quiet).
    replayed: Mutex<BTreeSet<String>>,
    bell: Notify,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn serve(State(r): State<Arc<Replay>>, uri: Uri, headers: HeaderMap) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    r.requests.lock().unwrap().push((format!("{}?{query}", uri.path()), header("accept")));
    if header("authorization") != format!("Bearer {TOKEN}") {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let resource = uri.path().rsplit('/').next().unwrap_or_default().to_string();
    if resource == "secrets" && !header("accept").contains("as=PartialObjectMetadata") {
        return status(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", "this test server serves secrets as metadata only");
    }
    if query.split('&').any(|p| p == "watch=1") {
        return watch(r, resource).await;
    }
    let file = if query.contains("continue=") {
        r.dir.join(format!("{resource}.list.2.json"))
    } else if r.dir.join(format!("{resource}.list.1.json")).exists() {
        r.dir.join(format!("{resource}.list.1.json"))
    } else {
        r.dir.join(format!("{resource}.list.json"))
    };
    match std::fs::read(&file) {
        Ok(body) => (StatusCode::OK, [("content-type", "application/json")], body).into_response(),
        Err(_) => status(StatusCode::NOT_FOUND, "NotFound", &format!("the server could not find the requested resource ({resource})")),
    }
}

/// A watch: the fixture's events once the test releases them (first watch
/// only), then an open, quiet stream.
async fn watch(r: Arc<Replay>, resource: String) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let file = r.dir.join(format!("{resource}.watch.jsonl"));
    tokio::spawn(async move {
        if file.exists() && r.replayed.lock().unwrap().insert(resource.clone()) {
            loop {
                let bell = r.bell.notified();
                if r.released.lock().unwrap().contains(&resource) {
                    break;
                }
                tokio::select! { _ = bell => {}, _ = tx.closed() => return }
            }
            for line in std::fs::read_to_string(&file).unwrap().lines() {
                if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
        }
        tx.closed().await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    resp
}

/// Starts the server on a loopback port with a certificate for localhost;
/// returns its URL and the CA file.
async fn start(r: Arc<Replay>, dir: &Path) -> (String, PathBuf) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        certified.cert.pem().into_bytes(),
        certified.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(serve).with_state(r);
    tokio::spawn(axum_server::from_tcp_rustls(listener, tls).unwrap().serve(app.into_make_service()));
    (format!("https://localhost:{port}"), ca)
}

fn list(f: &BTreeMap<String, FactValue>, path: &str) -> Vec<String> {
    match f.get(path) {
        Some(FactValue::List(l)) => l.clone(),
        other => panic!("{path}: {other:?}"),
    }
}

async fn next_snapshot(consumer: &StreamConsumer, decoder: &Decoder, secs: u64) -> ConfigSnapshot {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await.expect("a snapshot in time").unwrap();
        if let Ok(Message::Snapshot(s)) = decoder.decode(Stream::Snapshots, m.payload().unwrap_or_default()) {
            return s;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_agent_lists_watches_and_reports_the_cluster() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let replay = Arc::new(Replay { dir: repo().join("tests/fixtures/k8s"), ..Replay::default() });
    let (server, ca) = start(replay.clone(), work.path()).await;
    let token = work.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    let names = Names::new();
    create_topics(&names.collector_config(work.path(), "http://127.0.0.1:9/unused"));
    let cfg = work.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mode: cluster\nstate_dir: {}\nasset:\n  labels: {{env: test}}\nkafka:\n  brokers: {BROKERS}\n  topics:\n{}cluster:\n  name: prod-eu\n  api_server: {server}\n  ca_file: {}\n  token_file: {}\n  page_size: 1\n  debounce_ms: 300\n  secrets_metadata: true\n  objects: [pods, namespaces]\nheartbeat_secs: 0\n",
            work.path().join("state").display(),
            names.topics_yaml(false),
            ca.display(),
            token.display(),
        ),
    )
    .unwrap();
    let out = Command::new(bin("driftwatch-agent")).args(["check-config", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", unique("cluster-agent"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&names.topic("snapshots")]).unwrap();
    let decoder = Decoder::new().unwrap();
    let agent = Proc::spawn("cluster-agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&cfg), work.path());

    // 1. A full snapshot of the cluster as listed.
    let full = next_snapshot(&consumer, &decoder, 60).await;
    assert_eq!(full.kind, SnapshotKind::Full);
    assert_eq!((full.asset.id.as_str(), full.asset.kind.as_str()), ("prod-eu", "k8s-cluster"));
    assert_eq!(full.asset.labels.get("cluster").map(String::as_str), Some("prod-eu"));
    assert_eq!(full.asset.hostname, "localhost");
    let f: BTreeMap<String, FactValue> = full.facts.iter().map(|x| (x.path.clone(), x.value.clone())).collect();
    let debug = vec!["app/debug".to_string()];
    for check in [
        "privileged",
        "host_pid",
        "host_path",
        "privilege_escalation",
        "run_as_root",
        "added_capabilities",
        "writable_root_fs",
        "no_limits",
        "latest_image",
        "unpinned_image",
    ] {
        assert_eq!(list(&f, &format!("k8s.pods.{check}")), debug, "{check}: finished pods and kube-system are not reported");
    }
    assert_eq!(list(&f, "k8s.pods.host_network"), Vec::<String>::new());
    let expected = [
        ("k8s.namespaces.without_pss_enforce", vec!["app"]),
        ("k8s.network.namespaces_without_default_deny", vec!["app"]),
        ("k8s.serviceaccounts.default_automount", vec!["app/default"]),
        ("k8s.secrets.service_account_tokens", vec!["app/ci-token"]),
        ("k8s.ingresses.without_tls", vec!["app/admin"]),
        ("k8s.rbac.cluster_admin_bindings", vec!["ops-admins"]),
        ("k8s.rbac.wildcard_roles", vec!["ci-deployer"]),
        ("k8s.rbac.secret_readers", vec!["ci-deployer"]),
        ("k8s.nodes.not_ready", vec!["worker-2"]),
        ("k8s.nodes.kubelet_versions", vec!["v1.29.10", "v1.30.6"]),
    ];
    for (path, want) in expected {
        assert_eq!(list(&f, path), want, "{path}");
    }
    assert!(!f.contains_key("k8s.errors"), "every resource was listed: {:?}", f.get("k8s.errors"));

    // The pods and namespaces themselves (cluster.objects), for checks in
    // CEL over their fields: trimmed, a secret environment value redacted,
    // finished pods and kube-system left out.
    let objects: Vec<&str> = f.keys().filter(|k| k.starts_with("k8s.objects.")).map(String::as_str).collect();
    assert_eq!(
        objects,
        [
            "k8s.objects.namespaces.app",
            "k8s.objects.namespaces.web",
            r#"k8s.objects.pods["app/debug"]"#,
            r#"k8s.objects.pods["web/web-6d4cf56db6-tlxqd"]"#
        ]
    );
    let FactValue::Str(debug_pod) = &f[r#"k8s.objects.pods["app/debug"]"#] else { panic!("a pod as JSON") };
    let debug_pod: serde_json::Value = serde_json::from_str(debug_pod).unwrap();
    assert_eq!(debug_pod["spec"]["hostPID"], true);
    assert_eq!(debug_pod["spec"]["containers"][0]["env"][0], serde_json::json!({"name": "DB_PASSWORD", "value": "[REDACTED]"}));
    assert_eq!(debug_pod["spec"]["containers"][0]["env"][1]["value"], "debug");
    assert!(debug_pod.get("status").is_none() && debug_pod["metadata"].get("resourceVersion").is_none(), "{debug_pod}");

    // The cluster's findings as Kubernetes PolicyReports: the privileged pod
    // in its namespace's report, the cluster-admin binding in the cluster's.
    let snapshot_file = work.path().join("cluster-snapshot.json");
    std::fs::write(&snapshot_file, serde_json::to_vec(&full).unwrap()).unwrap();
    // `driftwatch-collector evaluate` of the snapshot, its JSON answer.
    let evaluate = |format: &str, policies: &str| -> serde_json::Value {
        let out = Command::new(bin("driftwatch-collector"))
            .args(["evaluate", "--format", format, "--snapshot"])
            .arg(&snapshot_file)
            .arg("--policies")
            .arg(repo().join(policies))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let reports = evaluate("policyreport", "policies");
    let items = reports["items"].as_array().unwrap();
    let app =
        items.iter().find(|i| i["kind"] == "PolicyReport" && i["metadata"]["namespace"] == "app").expect("the app namespace's report");
    let privileged = app["results"].as_array().unwrap().iter().find(|r| r["policy"] == "k8s.pods.no_privileged").expect("privileged pods");
    assert_eq!(privileged["result"], "fail");
    assert_eq!(privileged["resources"][0], serde_json::json!({"apiVersion": "v1", "kind": "Pod", "namespace": "app", "name": "debug"}));
    let cluster = items.iter().find(|i| i["kind"] == "ClusterPolicyReport").expect("the cluster's report");
    assert!(
        cluster["results"].as_array().unwrap().iter().any(|r| r["resources"].as_array().is_some_and(|rs| rs.contains(
            &serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "name": "ops-admins"})
        ))),
        "{cluster:#}"
    );
    assert!(cluster["summary"]["pass"].as_u64().unwrap() > 0, "{cluster:#}");

    // Checks written in CEL over those objects' fields, with no agent
    // release: the debug pod has no seccomp profile, the app namespace
    // enforces no Pod Security Standard; every container names its image.
    let results = evaluate("json", "tests/fixtures/packs/k8s-objects");
    let status: BTreeMap<&str, &str> =
        results.as_array().unwrap().iter().map(|r| (r["control_id"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(
        status,
        BTreeMap::from([("t.k8s.images_named", "pass"), ("t.k8s.namespaces_enforce_restricted", "fail"), ("t.k8s.seccomp", "fail")])
    );
    {
        let requests = replay.requests.lock().unwrap();
        assert!(requests.iter().any(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("continue=")), "pods were paged: {requests:?}");
        assert!(requests.iter().filter(|(p, _)| p.starts_with("/api/v1/secrets")).all(|(_, a)| a.contains("as=PartialObjectMetadata")));
        assert!(requests.iter().any(|(p, _)| p.starts_with("/api/v1/pods?watch=1") && p.contains("resourceVersion=1000")));
    }

    // 2. A watch that expires (410 Gone) makes the agent list again.
    replay.released.lock().unwrap().insert("namespaces".into());
    replay.bell.notify_waiters();
    let lists = |r: &Replay| r.requests.lock().unwrap().iter().filter(|(p, _)| p.starts_with("/api/v1/namespaces?limit=")).count();
    wait_for("namespaces listed again after 410", 20, async || (lists(&replay) >= 2).then_some(())).await;

    // 3. Pods change: a delta within seconds.
    replay.released.lock().unwrap().insert("pods".into());
    replay.bell.notify_waiters();
    let delta = next_snapshot(&consumer, &decoder, 15).await;
    assert_eq!((delta.kind, delta.sequence), (SnapshotKind::Delta, full.sequence + 1), "{delta:?}");
    let d: BTreeMap<String, FactValue> = delta.facts.iter().map(|x| (x.path.clone(), x.value.clone())).collect();
    assert_eq!(list(&d, "k8s.pods.privileged"), Vec::<String>::new(), "the privileged pod was deleted");
    assert_eq!(list(&d, "k8s.pods.host_network"), vec!["app/netshoot"]);
    assert_eq!(list(&d, "k8s.pods.unpinned_image"), vec!["app/netshoot"]);
    assert!(!d.contains_key("k8s.namespaces.without_pss_enforce"), "unchanged facts are not resent");
    // The objects too: the new pod is sent, the deleted one removed, the
    // unchanged ones not resent.
    assert!(d.contains_key(r#"k8s.objects.pods["app/netshoot"]"#), "{:?}", d.keys().collect::<Vec<_>>());
    assert!(delta.removed_paths.iter().any(|p| p == r#"k8s.objects.pods["app/debug"]"#), "{:?}", delta.removed_paths);
    assert!(!d.contains_key(r#"k8s.objects.pods["web/web-6d4cf56db6-tlxqd"]"#) && !d.contains_key("k8s.objects.namespaces.app"));
    drop(agent);
}
