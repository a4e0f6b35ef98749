//! Tamper-evident evidence against the real broker and ClickHouse: every
//! stored batch is a link of the collector's chain, `verify` finds an
//! intact chain intact, and after someone alters a row, deletes a whole
//! batch and inserts a forged one directly in ClickHouse, `verify` names
//! each of those batches and exits 1. A report carries the chain's head.

use std::process::Command;

use chrono::Utc;
use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

fn verify(cfg: &std::path::Path, from: &str) -> (bool, Value) {
    let out = Command::new(bin("driftwatch-collector"))
        .args(["verify", "--from", from, "--format", "json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

/// Waits until a mutation's effect is visible (18.16 runs them in the background).
async fn until(what: &str, sql: String) {
    wait_for(what, 30, async || try_query(&sql).await.ok().filter(|r| r.first().map(|r| count(&r["n"])).unwrap_or(0) > 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_an_altered_row_a_deleted_batch_and_an_inserted_one() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let packs = repo().join("tests/fixtures/packs/drift");
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/hook", &packs);
    create_topics(&cfg);
    let from = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let db = names.database.clone();

    // Three batches: one snapshot each, stored before the next is sent.
    let assets: Vec<String> = (0..3).map(|i| unique(&format!("ev{i}"))).collect();
    for (i, a) in assets.iter().enumerate() {
        let v = if i == 0 { "yes" } else { "no" };
        produce(&producer, &names, &snapshot(a, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", v)])).await;
        let a = a.clone();
        wait_for("the batch's link", 60, async || {
            let rows = try_query(&format!("SELECT count() AS n FROM {db}.evidence_chain WHERE has(row_tables, 1) AND batch_id IN (SELECT batch_id FROM {db}.snapshots WHERE asset_id = '{a}')")).await.ok()?;
            (count(&rows[0]["n"]) > 0).then_some(())
        })
        .await;
    }
    let (ok, v) = verify(&cfg, &from);
    assert!(ok, "an untouched chain verifies: {v:#}");
    assert!(v["links"].as_u64().unwrap() >= 3 && v["rows"].as_u64().unwrap() >= 9, "{v:#}");
    let batch = |a: String| {
        let sql = format!("SELECT batch_id FROM {db}.snapshots WHERE asset_id = '{a}'");
        async move { query(&sql).await[0]["batch_id"].as_str().unwrap().to_string() }
    };
    let (altered, deleted) = (batch(assets[0].clone()).await, batch(assets[1].clone()).await);

    // 1. Someone turns a failing evaluation into a passing one.
    exec(&format!("ALTER TABLE {db}.evaluations UPDATE status = 'pass' WHERE asset_id = '{}'", assets[0])).await;
    // 2. ... deletes every row of another batch.
    for t in ["snapshots", "facts", "evaluations", "violations", "drift_events"] {
        exec(&format!("ALTER TABLE {db}.{t} DELETE WHERE batch_id = '{deleted}'")).await;
    }
    // 3. ... and inserts a forged batch.
    let now = Utc::now().format("%Y-%m-%d %H:%M:%S");
    exec(&format!(
        "INSERT INTO {db}.evaluations (asset_id, control_id, status, severity, evaluated_at, snapshot_id, sequence, frameworks, evidence, message, batch_id) \
         VALUES ('{}', 't.root_login', 'pass', 'high', '{now}', 'forged', 1, ['soc2:CC6.1'], '{{}}', '', 'forged-batch')",
        assets[2]
    ))
    .await;
    until(
        "the alteration",
        format!(
            "SELECT count() AS n FROM {db}.evaluations WHERE asset_id = '{}' AND status = 'pass' AND batch_id != 'forged-batch'",
            assets[0]
        ),
    )
    .await;
    until("the deletion", format!("SELECT (count() = 0) AS n FROM {db}.evaluations WHERE batch_id = '{deleted}'")).await;

    let (ok, v) = verify(&cfg, &from);
    assert!(!ok, "verify exits 1");
    let findings = v["findings"].as_array().unwrap();
    let has = |kind: &str, batch: &str| findings.iter().any(|f| f["kind"] == kind && f["batch_id"] == batch);
    assert!(has("rows_altered", &altered), "{v:#}");
    assert!(has("rows_deleted", &deleted), "{v:#}");
    assert!(has("rows_inserted", "forged-batch"), "{v:#}");
    let text = Command::new(bin("driftwatch-collector")).args(["verify", "--from", &from, "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("batch {deleted}: deleted")) && text.contains("batch forged-batch: inserted"), "{text}");

    // A report for the period carries each chain's head.
    let out = Command::new(bin("driftwatch-collector"))
        .args(["report", "--framework", "soc2", "--from", &from, "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let chain = &report["evidence"][0];
    assert!(chain["head"].as_str().is_some_and(|h| h.len() == 64) && chain["links"].as_u64().unwrap() >= 3, "{report:#}");

    drop(collector);
    names.drop_database().await;
}
