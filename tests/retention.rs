//! Retention against ClickHouse: whole monthly partitions past their
//! table's retention are listed by `retention --dry-run` (nothing dropped)
//! and dropped by `retention`; recent months and kept tables (rollups)
//! stay.

use std::process::Command;

use driftwatch_tests::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_partitions_are_listed_then_dropped() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config(work.path(), "http://127.0.0.1:9/hook");
    let run = |args: &[&str]| {
        let out = Command::new(bin("driftwatch-collector")).args(args).arg("--config").arg(&cfg).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let empty: Value = serde_json::from_slice(&run(&["retention", "--dry-run", "--format", "json"])).unwrap();
    assert_eq!(empty, serde_json::json!([]), "a new database has nothing to drop");
    let db = names.database.clone();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S");
    exec(&format!(
        "INSERT INTO {db}.sla_measurements (asset_id, probe_id, timestamp, success) VALUES ('a','web','2020-01-15 00:00:00',1), ('a','web','{now}',1)"
    ))
    .await;
    exec(&format!("INSERT INTO {db}.evaluations (asset_id, control_id, status, evaluated_at) VALUES ('a','c','pass','2018-01-10 00:00:00'), ('a','c','pass','{now}')")).await;
    exec(&format!(
        "INSERT INTO {db}.sla_minutes (probe_id, asset_id, minute, total, good, version) VALUES ('web','a','2018-01-10 00:00:00',1,1,1)"
    ))
    .await;

    let plan: Value = serde_json::from_slice(&run(&["retention", "--dry-run", "--format", "json"])).unwrap();
    let listed: Vec<(String, String)> =
        plan.as_array().unwrap().iter().map(|e| (e["table"].as_str().unwrap().into(), e["partition"].as_str().unwrap().into())).collect();
    assert_eq!(listed, vec![("evaluations".to_string(), "201801".to_string()), ("sla_measurements".to_string(), "202001".to_string())]);
    let rows = |t: &'static str| {
        let sql = format!("SELECT count() AS n FROM {db}.{t}");
        async move { count(&query(&sql).await[0]["n"]) }
    };
    assert_eq!((rows("sla_measurements").await, rows("evaluations").await), (2, 2), "a dry run drops nothing");

    let text = String::from_utf8(run(&["retention"])).unwrap();
    assert!(text.starts_with("2 partition(s) dropped"), "{text}");
    assert_eq!((rows("sla_measurements").await, rows("evaluations").await), (1, 1), "the recent months stay");
    assert_eq!(rows("sla_minutes").await, 1, "rollups are kept");
    names.drop_database().await;
}
