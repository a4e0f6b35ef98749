//! A real ClickHouse cluster: two servers as the replicas of one shard,
//! with ZooKeeper, all on loopback (`deploy/local/services cluster up`).
//! The collector creates the cluster schema itself (`clickhouse.cluster`
//! with `migrate` on: `_local` replicated tables and Distributed ones,
//! `ON CLUSTER`), writes through replica 1, and under load each replica is
//! killed in turn (SIGKILL) and restarted: every event ends stored once on
//! both replicas, the evidence chain verifies, and a second collector on
//! replica 2 finds every migration applied.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

/// ZooKeeper and two ClickHouse replicas of this test's own.
struct PrivateCluster {
    dir: tempfile::TempDir,
    zookeeper: u16,
    /// HTTP, native and interserver ports of replicas 1 and 2.
    ports: [u16; 6],
}

impl PrivateCluster {
    fn start() -> Self {
        let c = PrivateCluster { dir: tempfile::tempdir().unwrap(), zookeeper: free_port(), ports: std::array::from_fn(|_| free_port()) };
        c.services(&["cluster", "up"]);
        c
    }

    fn services(&self, args: &[&str]) {
        let ports = self.ports.map(|p| p.to_string()).join(",");
        private_services(self.dir.path(), &[("ZOOKEEPER_PORT", self.zookeeper.to_string()), ("CLUSTER_PORTS", ports)], args);
    }

    /// Replica `n`'s HTTP URL (1 or 2).
    fn url(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[(n - 1) * 3])
    }

    async fn query(&self, n: usize, sql: &str) -> Result<String, String> {
        let r = reqwest::Client::new().post(self.url(n)).body(sql.to_string()).send().await.map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(text.trim().to_string())
        } else {
            Err(text)
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.services(&["reset"]);
    }
}

fn collector_config(work: &Path, names: &Names, url: &str, api: u16) -> std::path::PathBuf {
    let cfg = work.join(format!("collector-{api}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "kafka:\n  brokers: {BROKERS}\n  group_id: {}\n  topics:\n{}clickhouse:\n  url: {url}\n  database: {}\n  cluster: driftwatch\n\
             policies: {}\nbatch: {{max_messages: 200, max_wait_ms: 200}}\napi: {{listen: \"127.0.0.1:{api}\"}}\n",
            names.group,
            names.topics_yaml(true),
            names.database,
            repo().join("tests/fixtures/packs/drift").display()
        ),
    )
    .unwrap();
    cfg
}

async fn produce_range(p: &FutureProducer, names: &Names, asset: &str, range: std::ops::Range<usize>, per_sec: u64) {
    for i in range {
        produce(p, names, &ssh_login(asset, i, "cluster-host", &format!("user{}", i % 7))).await;
        if i % 50 == 0 {
            let v = if i % 100 == 0 { "no" } else { "yes" };
            produce(p, names, &snapshot(asset, i as i64, SnapshotKind::Full, &[("sshd.config.permitrootlogin", v)])).await;
        }
        tokio::time::sleep(Duration::from_millis(1000 / per_sec.max(1))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_and_duplicates_nothing() {
    services_up();
    let cluster = PrivateCluster::start();
    let names = Names::new();
    let db = names.database.clone();
    let work = tempfile::tempdir().unwrap();
    let from = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let cfg = collector_config(work.path(), &names, &cluster.url(1), free_port());
    create_topics(&cfg);
    let mut running = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());

    // The collector made the schema on both replicas: replicated `_local`
    // tables and Distributed ones over them.
    wait_for("the cluster schema on both replicas", 120, async || {
        for n in [1, 2] {
            let engine = cluster
                .query(n, &format!("SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'audit_events_local'"))
                .await
                .ok()?;
            (engine == "ReplicatedReplacingMergeTree").then_some(())?;
            let dist = cluster
                .query(n, &format!("SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'audit_events'"))
                .await
                .ok()?;
            (dist == "Distributed").then_some(())?;
        }
        Some(())
    })
    .await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("cluster");
    let stored = async |n: usize| -> Option<u64> {
        let sql = format!("SELECT count() FROM {db}.audit_events FINAL WHERE asset_id = '{asset}'");
        cluster.query(n, &sql).await.ok()?.parse().ok()
    };

    // 1. Before: 300 events stored.
    produce_range(&producer, &names, &asset, 0..300, 300).await;
    wait_for("the first 300 events", 120, async || (stored(1).await? == 300).then_some(())).await;

    // 2. Replica 2 (the one not written through) is killed mid-load, and
    // restarted.
    let load = |range: std::ops::Range<usize>| {
        let (producer, names, asset) = (producer.clone(), names.clone(), asset.clone());
        tokio::spawn(async move { produce_range(&producer, &names, &asset, range, 60).await })
    };
    let producing = load(300..900);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.services(&["cluster", "kill", "2"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.services(&["cluster", "up"]);
    producing.await.unwrap();

    // 3. Replica 1, which the collector writes through, is killed mid-load:
    // the collector keeps running and writes again once it is back.
    let producing = load(900..1500);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.services(&["cluster", "kill", "1"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(running.alive(), "the collector keeps running while its replica is down:\n{}", running.log());
    cluster.services(&["cluster", "up"]);
    producing.await.unwrap();
    wait_for("all 1500 events", 240, async || (stored(1).await? == 1500).then_some(())).await;
    assert!(running.log().contains("store write failed; offsets not committed"), "the outage is logged");

    // 4. Both replicas hold every event once, and every evaluation alike.
    for n in [1, 2] {
        cluster.query(n, &format!("SYSTEM SYNC REPLICA {db}.audit_events_local")).await.expect("sync replica");
        cluster.query(n, &format!("SYSTEM SYNC REPLICA {db}.evaluations_local")).await.expect("sync replica");
    }
    // Rows a retried write sent twice are merged away as on one server; on
    // 18.16 a replicated table merges on its leader, which a kill moves.
    wait_for("the events' parts merged", 60, async || {
        for n in [1, 2] {
            if cluster.query(n, &format!("OPTIMIZE TABLE {db}.audit_events_local FINAL")).await.is_ok() {
                return Some(());
            }
        }
        None
    })
    .await;
    let mut evaluations = Vec::new();
    for n in [1, 2] {
        cluster.query(n, &format!("SYSTEM SYNC REPLICA {db}.audit_events_local")).await.expect("sync replica");
        let rows = cluster
            .query(n, &format!("SELECT count(), uniqExact(event_id) FROM {db}.audit_events_local WHERE asset_id = '{asset}' FORMAT TSV"))
            .await
            .unwrap();
        assert_eq!(rows, "1500\t1500", "replica {n} holds every event once");
        let evals = cluster
            .query(n, &format!("SELECT uniqExact(snapshot_id, control_id) FROM {db}.evaluations_local WHERE asset_id = '{asset}'"))
            .await
            .unwrap();
        evaluations.push(evals);
    }
    assert_eq!(evaluations[0], evaluations[1], "both replicas hold the same evaluations");
    assert!(evaluations[0].parse::<u64>().unwrap() >= 30, "every snapshot was evaluated: {}", evaluations[0]);

    // 5. The evidence chain verifies on the cluster.
    let out = collector(&["verify", "--from", &from, "--format", "json"], &cfg);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(out.status.success(), "verify is clean: {v:#} {}", String::from_utf8_lossy(&out.stderr));
    assert!(v["links"].as_u64().unwrap_or(0) > 0, "{v:#}");

    // 6. A second collector, on replica 2, finds every migration applied
    // (the record is replicated) and applies none.
    let cfg2 = collector_config(work.path(), &names, &cluster.url(2), free_port());
    let out = collector(&["verify", "--from", &from, "--format", "json"], &cfg2);
    assert!(out.status.success(), "verify through replica 2: {}", String::from_utf8_lossy(&out.stderr));
    let recorded = cluster.query(2, &format!("SELECT count(), uniqExact(version) FROM {db}.schema_migrations FORMAT TSV")).await.unwrap();
    let all = driftwatch_schemas::clickhouse::MIGRATIONS.len();
    assert_eq!(recorded, format!("{all}\t{all}"), "each migration recorded once, none applied again");
    assert!(running.terminate(30), "stops on SIGTERM");
}
