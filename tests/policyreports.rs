//! Kubernetes PolicyReports served live: a cluster's snapshot evaluated by
//! the collector comes back from `GET /api/v1/policyreports` as
//! `wgpolicyk8s.io/v1alpha2` reports from the stored results, the
//! privileged pod in its namespace's report, the cluster-admin binding in
//! the cluster's.

use std::process::Command;

use driftwatch_schemas::{AssetKind, Fact, FactValue, Message, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clusters_stored_findings_are_served_as_policyreports() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let (cfg, port) = names.collector_config_with_api(
        work.path(),
        "http://127.0.0.1:9/unused",
        &format!("  keys:\n{}", api_key("ops", "ops-key", "read")),
    );
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let cluster = unique("prod-cluster");
    let mut m = snapshot(&cluster, 1, SnapshotKind::Full, &[]);
    if let Message::Snapshot(s) = &mut m {
        s.asset.kind = AssetKind::K8sCluster;
        let list = |v: &[&str]| FactValue::List(v.iter().map(|s| s.to_string()).collect());
        for (path, value) in [
            ("k8s.pods.privileged", list(&["app/debug"])),
            ("k8s.rbac.cluster_admin_bindings", list(&["ops-admins"])),
            ("k8s.pods.host_pid", list(&[])),
        ] {
            s.facts.push(Fact { path: path.into(), value });
        }
    }
    produce(&producer, &names, &m).await;
    wait_status(&names.database, &cluster, "k8s.pods.no_privileged", None, "fail", 60).await;

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/policyreports");
    let list: Value = http.get(&url).query(&[("cluster", &cluster)]).bearer_auth("ops-key").send().await.unwrap().json().await.unwrap();
    assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("v1"), Some("List")));
    let items = list["items"].as_array().unwrap();
    let app =
        items.iter().find(|i| i["kind"] == "PolicyReport" && i["metadata"]["namespace"] == "app").unwrap_or_else(|| panic!("{list:#}"));
    let privileged = app["results"].as_array().unwrap().iter().find(|r| r["policy"] == "k8s.pods.no_privileged").unwrap();
    assert_eq!(privileged["result"], "fail");
    assert_eq!(privileged["resources"][0], json!({"apiVersion": "v1", "kind": "Pod", "namespace": "app", "name": "debug"}));
    let whole = items.iter().find(|i| i["kind"] == "ClusterPolicyReport").unwrap_or_else(|| panic!("{list:#}"));
    let admins = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "name": "ops-admins"});
    assert!(
        whole["results"].as_array().unwrap().iter().any(|r| r["resources"].as_array().is_some_and(|rs| rs.contains(&admins))),
        "{whole:#}"
    );
    // Host PID: passing, reported as such.
    assert!(
        whole["results"]
            .as_array()
            .unwrap()
            .iter()
            .chain(app["results"].as_array().unwrap())
            .any(|r| r["policy"] == "k8s.pods.no_host_pid" && r["result"] == "pass"),
        "{list:#}"
    );
    // Another cluster's name: nothing.
    let none: Value =
        http.get(&url).query(&[("cluster", "no-such-cluster")]).bearer_auth("ops-key").send().await.unwrap().json().await.unwrap();
    assert_eq!(none["items"], json!([]));
    drop(collector);
    names.drop_database().await;
}
