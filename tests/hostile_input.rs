//! Hostile records, produced raw to the real broker as anyone with write
//! access to the topics could, never crash, stall or fool a running
//! collector: each is dead-lettered with the limit it broke (or stored with
//! its time bounded by its receipt), the collector stays up, and the good
//! record after them is stored.

use std::process::Command;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use driftwatch_schemas::{Encoder, Message, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;

const CONTROL: &str = "linux.sshd.root_login_disabled";

fn header(m: &rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<String> {
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_bounded_and_the_collector_keeps_going() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
    let port = free_port();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("listen: null", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", BROKERS).set("message.max.bytes", "2000000").create().unwrap();
    let asset = unique("hostile");
    let mut enc = Encoder::new().unwrap();
    let send = async |topic: String, payload: Vec<u8>| {
        producer.send(FutureRecord::to(&topic).key(asset.as_str()).payload(&payload), Duration::from_secs(10)).await.unwrap();
    };

    // A full snapshot with root login allowed: the control fails.
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    // A fact path of 50,000 segments (100 KB): once a stack overflow that
    // killed every collector taking the partition.
    let deep = format!("a{}", ".b".repeat(50_000));
    let Message::Snapshot(mut s) = snapshot(&asset, 2, SnapshotKind::Delta, &[]) else { unreachable!() };
    s.facts = vec![driftwatch_schemas::Fact { path: deep, value: "x".into() }];
    send(names.topic("snapshots"), enc.encode(&Message::Snapshot(s.clone())).unwrap()).await;
    // Deep but short: 40 segments.
    s.facts[0].path = format!("a{}", ".b".repeat(39));
    send(names.topic("snapshots"), enc.encode(&Message::Snapshot(s)).unwrap()).await;
    // A delta far ahead in sequence: applied, it would make every real
    // delta after it look old.
    let Message::Snapshot(mut forged) = snapshot(&asset, i64::MAX, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no")]) else {
        unreachable!()
    };
    forged.snapshot_id = format!("{asset}-forged");
    send(names.topic("snapshots"), enc.encode(&Message::Snapshot(forged)).unwrap()).await;
    // 120 audit events, each stamped in another month since 2000: one
    // insert across 120 monthly partitions, which ClickHouse refuses.
    for i in 0..120 {
        let Message::Audit(mut a) = ssh_login(&asset, i, "h", "mallory") else { unreachable!() };
        a.timestamp = Utc.with_ymd_and_hms(2000 + (i / 12) as i32, (i % 12) as u32 + 1, 1, 0, 0, 0).unwrap();
        send(names.topic("audit"), enc.encode(&Message::Audit(a)).unwrap()).await;
    }
    // A heartbeat from 2106: it would keep a dead host "alive".
    let mut heartbeat = heartbeat(&asset);
    if let Message::Sla(h) = &mut heartbeat {
        h.timestamp = Utc.with_ymd_and_hms(2106, 1, 1, 0, 0, 0).unwrap();
    }
    send(names.topic("sla"), enc.encode(&heartbeat).unwrap()).await;
    // 1.2 MB that is not Avro: its copy with headers is over the dead-letter
    // producer's message.max.bytes, and was once retried forever.
    send(names.topic("snapshots"), vec![0x42; 1_200_000]).await;
    // The next real delta (sequence 2) fixes sshd: applied, it passes.
    produce(&producer, &names, &snapshot(&asset, 2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no")])).await;

    let db = names.database.clone();
    wait_status(&db, &asset, CONTROL, Some(&format!("{asset}-2")), "pass", 90).await;
    assert!(collector.alive(), "the collector survived:\n{}", collector.log());
    let forged = number(&format!("SELECT count() AS n FROM {db}.evaluations WHERE snapshot_id = '{asset}-forged'")).await;
    assert_eq!(forged, 0, "the far-ahead delta was not applied");

    // Every audit event is stored, at its receipt, its claimed time kept.
    let this_month = Utc::now().year() as u64 * 100 + Utc::now().month() as u64;
    wait_for("the 120 audit events to be stored", 60, async || {
        (number(&format!("SELECT count() AS n FROM {db}.audit_events WHERE asset_id = '{asset}'")).await == 120).then_some(())
    })
    .await;
    let months = query(&format!("SELECT DISTINCT toYYYYMM(timestamp) AS m FROM {db}.audit_events WHERE asset_id = '{asset}'")).await;
    assert!(months.len() <= 2 && months.iter().all(|r| count(&r["m"]) + 1 >= this_month), "{months:?}");
    let kept = query(&format!(
        "SELECT extra_values[indexOf(extra_keys, 'agent_timestamp')] AS t FROM {db}.audit_events WHERE event_id = '{asset}-000013'"
    ))
    .await;
    assert_eq!(kept[0]["t"], "2001-02-01T00:00:00.000Z");
    let heartbeat_year = query(&format!("SELECT toYear(timestamp) AS y FROM {db}.sla_measurements WHERE asset_id = '{asset}'")).await;
    assert_eq!(count(&heartbeat_year[0]["y"]), Utc::now().year() as u64, "the heartbeat is stored at its receipt");

    // The dead letters say which limit, and the oversized one went as a
    // truncated copy with its original size.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .unwrap();
    consumer.subscribe(&[&names.topic("dead-letter")]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.expect("dead letters arrive").unwrap();
        letters.push((
            header(&m, "driftwatch.reason").unwrap(),
            header(&m, "driftwatch.original_size"),
            m.payload().map_or(0, <[u8]>::len),
        ));
    }
    letters.sort();
    assert!(letters[0].0.starts_with("limit max_path_bytes: facts[0].path is 100001"), "{letters:?}");
    assert!(letters[1].0.starts_with("limit max_path_depth: facts[0].path is 40"), "{letters:?}");
    assert!(letters[2].0.starts_with("message does not start with the Avro single-object marker"), "{letters:?}");
    assert_eq!(letters[2].1.as_deref(), Some("1200000"), "{letters:?}");
    assert!(letters[2].2 < 1_000_000, "{letters:?}");

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        "limit_violations_total{limit=\"max_path_bytes\"",
        "clock_skew_records_total{",
        "dead_letter_failures_total{reason=\"too_large\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    names.drop_database().await;
}

/// At its memory ceiling the collector pauses consumption instead of
/// growing until it is killed: it stays up and in its group, says so in
/// `/metrics` and its log, and takes no records while over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_memory_ceiling_the_collector_pauses_consumption() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config(work.path(), "http://127.0.0.1:9/hook");
    let port = free_port();
    // A ceiling of 1 MiB: over it from the start.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("listen: null", &format!("listen: 127.0.0.1:{port}"))
        + "evaluation: {memory_limit_mb: 1, tick_ms: 200}\n";
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    wait_for("consumption to pause and the partitions to be assigned", 60, async || {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
        let log = collector.log();
        (metrics.contains("driftwatch_consumption_paused 1")
            && log.contains("partitions assigned")
            && log.contains("memory ceiling reached"))
        .then_some(())
    })
    .await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("ceiling");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")])).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(collector.alive(), "{}", collector.log());
    let db = names.database.clone();
    let rows = try_query(&format!("SELECT count() AS n FROM {db}.snapshots WHERE asset_id = '{asset}'")).await.expect("the store is there");
    assert_eq!(count(&rows[0]["n"]), 0, "nothing taken while paused");
    names.drop_database().await;
}
