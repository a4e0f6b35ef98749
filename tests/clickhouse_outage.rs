//! ClickHouse stopped for a minute under load (a private server, so the
//! other tests keep theirs): the collector keeps running, stops consuming
//! and committing while it cannot store (its memory stays bounded: it
//! holds one batch in hand and one in flight), and once ClickHouse is back
//! ends with every event stored exactly once.

use std::process::Command;
use std::time::Duration;

use driftwatch_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

/// A ClickHouse of this test's own, started and stopped by the services
/// script (own data folder and ports).
struct PrivateClickHouse {
    dir: tempfile::TempDir,
    http: u16,
    tcp: u16,
}

impl PrivateClickHouse {
    fn start() -> Self {
        let ch = PrivateClickHouse {
            dir: tempfile::tempdir().unwrap(),
            http: driftwatch_tests::free_port(),
            tcp: driftwatch_tests::free_port(),
        };
        ch.services(&["clickhouse", "up"]);
        ch
    }

    fn services(&self, args: &[&str]) {
        let ports = [("CLICKHOUSE_HTTP_PORT", self.http.to_string()), ("CLICKHOUSE_TCP_PORT", self.tcp.to_string())];
        private_services(self.dir.path(), &ports, args);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    async fn query(&self, sql: &str) -> Option<String> {
        let r = reqwest::Client::new().post(self.url()).body(sql.to_string()).send().await.ok()?;
        r.status().is_success().then_some(())?;
        Some(r.text().await.ok()?.trim().to_string())
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        // Stopped, and its tables removed (they may live in /dev/shm).
        self.services(&["reset"]);
    }
}

async fn produce_range(p: &FutureProducer, names: &Names, asset: &str, range: std::ops::Range<usize>, per_sec: u64) {
    for i in range {
        produce(p, names, &ssh_login(asset, i, "outage-host", &format!("user{}", i % 7))).await;
        tokio::time::sleep(Duration::from_millis(1000 / per_sec.max(1))).await;
    }
}

async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    Some(text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// The group's committed offsets, summed over the audit topic's partitions.
fn committed(names: &Names) -> i64 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", BROKERS).set("group.id", &names.group).create().unwrap();
    let topic = names.topic("audit");
    let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(&topic, p.id());
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_a_minute_loses_and_duplicates_nothing() {
    services_up();
    let ch = PrivateClickHouse::start();
    let names = Names::new();
    let work = tempfile::tempdir().unwrap();
    let api = driftwatch_tests::free_port();
    let cfg = work.path().join("collector.yaml");
    std::fs::write(
        &cfg,
        format!(
            "kafka:\n  brokers: {BROKERS}\n  group_id: {}\n  topics:\n{}clickhouse:\n  url: {}\n  database: {}\npolicies: {}\n\
             batch: {{max_messages: 200, max_wait_ms: 200}}\napi: {{listen: \"127.0.0.1:{api}\"}}\n",
            names.group,
            names.topics_yaml(true),
            ch.url(),
            names.database,
            repo().join("policies").display()
        ),
    )
    .unwrap();
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("outage");
    let db = names.database.clone();
    let stored = async |ch: &PrivateClickHouse| -> Option<u64> {
        ch.query(&format!("SELECT count() FROM {db}.audit_events FINAL WHERE asset_id = '{asset}'")).await?.parse().ok()
    };

    // 1. Before: 500 events stored.
    produce_range(&producer, &names, &asset, 0..500, 500).await;
    wait_for("the first 500 events in ClickHouse", 90, async || (stored(&ch).await? == 500).then_some(())).await;
    wait_for("the first offsets committed", 30, async || (committed(&names) >= 500).then_some(())).await;

    // 2. ClickHouse stops for a minute while events keep coming.
    ch.services(&["clickhouse", "down"]);
    let rss_before = rss_mb(collector.pid());
    let producing = {
        let (producer, names, asset) = (producer.clone(), names.clone(), asset.clone());
        tokio::spawn(async move { produce_range(&producer, &names, &asset, 500..2500, 40).await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Not ready, and it says so without the store's own error (which names
    // the server, the database and the user).
    let ready = reqwest::get(format!("http://127.0.0.1:{api}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "store unavailable");
    let (decoded_early, committed_early) = (metric(api, "driftwatch_records_total").await.unwrap_or(0.0), committed(&names));
    let mut rss_max = rss_before;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(collector.alive(), "the collector keeps running while ClickHouse is down:\n{}", collector.log());
        rss_max = rss_max.max(rss_mb(collector.pid()));
    }
    let (decoded_late, committed_late) = (metric(api, "driftwatch_records_total").await.unwrap_or(0.0), committed(&names));
    assert_eq!(committed_early, committed_late, "no offset is committed while nothing can be stored");
    assert!(committed_late < 2500, "offsets stopped short of what was produced: {committed_late}");
    assert!(
        decoded_late - decoded_early <= 400.0,
        "consumption stops (one batch in hand, one in flight), it does not buffer: {decoded_early} → {decoded_late}"
    );
    assert!(rss_max < rss_before + 64.0, "memory stays bounded: {rss_before:.0} MB → {rss_max:.0} MB");
    assert!(collector.log().contains("store write failed; offsets not committed"), "the outage is logged");

    // 3. ClickHouse is back: everything lands, once.
    ch.services(&["clickhouse", "up"]);
    producing.await.unwrap();
    produce_range(&producer, &names, &asset, 2500..3000, 500).await;
    wait_for("all 3000 events in ClickHouse", 180, async || (stored(&ch).await? == 3000).then_some(())).await;
    ch.query(&format!("OPTIMIZE TABLE {db}.audit_events FINAL")).await.expect("optimize");
    let rows = ch
        .query(&format!("SELECT count(), uniqExact(event_id) FROM {db}.audit_events WHERE asset_id = '{asset}' FORMAT TSV"))
        .await
        .expect("count");
    assert_eq!(rows, "3000\t3000", "every event stored exactly once");
    wait_for("the last offsets committed", 60, async || (committed(&names) >= 3000).then_some(())).await;
    assert!(collector.terminate(30), "stops on SIGTERM");
}
