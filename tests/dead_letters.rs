//! Bad records never stop the collector: on every topic, garbage, a record
//! written with an unknown schema, a truncated one, an empty one, an
//! oversized one and one of another stream's schema go to the dead-letter
//! topic with the reason in a header and are counted; a good record after
//! them is still processed.

use std::process::Command;
use std::time::Duration;

use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, Encoder, Fact, Message, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;

/// A consumer of the names' dead-letter topic, from its start.
fn dead_letter_reader(names: &Names) -> StreamConsumer {
    topic_reader(&names.topic("dead-letter"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_and_the_collector_keeps_going() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let (cfg, port) = names.collector_config_with_api(work.path(), &format!("http://{addr}/hook"), "");
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let topic = names.topic("snapshots");
    let mut unknown_schema = vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
    unknown_schema.extend_from_slice(b"datum");
    let asset = unique("asset");
    let good = Encoder::new()
        .unwrap()
        .encode(&Message::Snapshot(ConfigSnapshot {
            asset: Asset { id: asset.clone(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() },
            agent_id: "t".into(),
            agent_version: "0".into(),
            snapshot_id: unique("s"),
            sequence: 1,
            collected_at: chrono::Utc::now(),
            kind: SnapshotKind::Full,
            facts: vec![Fact { path: "sshd.config.permitrootlogin".into(), value: "no".into() }],
            removed_paths: vec![],
        }))
        .unwrap();
    // On the other topics: nothing, a snapshot where a probe result belongs,
    // and 900 KB that start like an audit event.
    let mut oversized = good[..10].to_vec();
    let audit_fp =
        driftwatch_schemas::avro::fingerprint(&driftwatch_schemas::avro::current_schema(driftwatch_schemas::Stream::Audit).unwrap());
    oversized[2..10].copy_from_slice(&audit_fp.to_le_bytes());
    oversized.resize(900_000, 0x7f);
    let others: [(String, &[u8]); 4] = [
        (names.topic("sla"), b""),
        (names.topic("sla"), &good),
        (names.topic("audit"), &oversized),
        (names.topic("audit"), b"\xC3\x01short"),
    ];
    for (t, payload) in &others {
        producer.send(FutureRecord::to(t).key(asset.as_str()).payload(*payload), Duration::from_secs(10)).await.unwrap();
    }
    let bad: [&[u8]; 3] = [b"{\"not\": \"avro\"}", &unknown_schema, &good[..good.len() / 2]];
    for payload in bad.iter().chain([&&good[..]]) {
        let record = FutureRecord::to(&topic).key(asset.as_str()).payload(*payload).headers(signed_as(&asset, payload));
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }

    // The good record after the bad ones is stored and evaluated.
    wait_status(&names.database, &asset, "linux.sshd.root_login_disabled", None, "pass", 60).await;
    assert!(collector.alive(), "collector survived bad records");

    // The dead-letter topic holds the three bad records with their reasons.
    let consumer = dead_letter_reader(&names);
    let mut reasons = Vec::new();
    let mut elsewhere = Vec::new();
    while reasons.len() + elsewhere.len() < 7 {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.expect("dead letters arrive").unwrap();
        let headers = m.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|h| h.key == "driftwatch.reason")
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap();
        let origin = headers.iter().find(|h| h.key == "driftwatch.topic").and_then(|h| h.value).unwrap();
        if origin == topic.as_bytes() {
            reasons.push(reason);
        } else {
            elsewhere.push((String::from_utf8_lossy(origin).into_owned(), reason, m.payload().map_or(0, <[u8]>::len)));
        }
    }
    elsewhere.sort();
    let (audit, sla) = (names.topic("audit"), names.topic("sla"));
    assert!(
        elsewhere[0].0 == audit && elsewhere[0].1.starts_with("Avro datum does not decode") && elsewhere[0].2 == 900_000,
        "{elsewhere:?}"
    );
    assert!(elsewhere[1].0 == audit && elsewhere[1].1.starts_with("message is 7 bytes, shorter than"), "{elsewhere:?}");
    assert!(elsewhere[2].0 == sla && elsewhere[2].1.starts_with("message is 0 bytes"), "{elsewhere:?}");
    assert!(
        elsewhere[3].0 == sla && elsewhere[3].1.contains("is for Snapshots, but the message arrived on the Sla stream"),
        "{elsewhere:?}"
    );
    reasons.sort();
    assert!(reasons[0].starts_with("Avro datum does not decode"), "{reasons:?}");
    assert!(reasons[1].starts_with("message starts neither with the Avro single-object marker"), "{reasons:?}");
    assert!(reasons[2].starts_with("unknown writer schema fingerprint 0807060504030201"), "{reasons:?}");
    assert!(collector.log().contains("record dead-lettered"));
    // Counted, per topic.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let counted: u64 = metrics
        .lines()
        .filter(|l| l.contains("records_total") && l.contains("dead_lettered") && l.contains(&names.prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 7, "{metrics}");
    names.drop_database().await;
}

/// A record whose rows the store refuses (here a ClickHouse `throwIf` on
/// one fact path, as a value the server cannot hold would be) is traced in
/// its batch, sent to the dead-letter topic as it was produced, and
/// skipped past: the records beside it and after it are stored, the
/// partition goes on, and the evidence chain seals exactly what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_store_refuses_is_dead_lettered_alone() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let (cfg, port) = names.collector_config_with_api(work.path(), "http://127.0.0.1:9/hook", "");
    create_topics(&cfg);
    let from = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let facts = format!("{}.facts", names.database);
    wait_for("the collector's tables", 60, async || try_query(&format!("SELECT count() AS n FROM {facts}")).await.ok()).await;
    exec(&format!("ALTER TABLE {facts} ADD COLUMN refuse UInt8 MATERIALIZED throwIf(path = 'poison.path')")).await;

    let (good, poisoned, after) = (unique("good"), unique("poisoned"), unique("after"));
    let root = ("sshd.config.permitrootlogin", "no");
    let poison = snapshot(&poisoned, 1, SnapshotKind::Full, &[root, ("poison.path", "x")]);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    produce_all(&producer, &names, &[snapshot(&good, 1, SnapshotKind::Full, &[root]), poison.clone()]).await;
    produce_all(&producer, &names, &[snapshot(&after, 1, SnapshotKind::Full, &[root])]).await;

    let control = "linux.sshd.root_login_disabled";
    wait_status(&names.database, &good, control, None, "pass", 60).await;
    wait_status(&names.database, &after, control, None, "pass", 60).await;

    // The refused record, as produced, with the reason.
    let consumer = dead_letter_reader(&names);
    let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv()).await.expect("a dead letter arrives").unwrap();
    let header = |k: &str| {
        m.headers().and_then(|h| h.iter().find(|h| h.key == k)).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let reason = header("driftwatch.reason").unwrap();
    assert!(
        reason.starts_with("the store refused this record's rows (batch ") && reason.contains("facts: ") && reason.contains("395"),
        "{reason}"
    );
    assert_eq!(header("driftwatch.topic").as_deref(), Some(names.topic("snapshots").as_str()));
    assert_eq!(m.payload(), Some(&Encoder::new().unwrap().encode(&poison).unwrap()[..]), "the record as produced");
    assert_eq!(m.key(), Some(poisoned.as_bytes()));
    assert!(tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await.is_err(), "only the refused record is dead-lettered");

    // Nothing of its facts is stored; its partition goes on.
    let n = number(&format!("SELECT count() AS n FROM {facts} WHERE asset_id = '{poisoned}'")).await;
    assert_eq!(n, 0, "none of the refused record's facts");
    let fixed = snapshot(&poisoned, 2, SnapshotKind::Full, &[root]);
    produce_all(&producer, &names, &[fixed]).await;
    wait_status(&names.database, &poisoned, control, Some(&format!("{poisoned}-2")), "pass", 60).await;
    assert!(collector.alive(), "the collector survived the refusal");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("driftwatch_store_refused_records_total 1"), "{metrics}");
    assert!(collector.log().contains("the store refused the batch's rows; finding whose"));

    // The chain seals what is stored: verify finds it intact.
    let out = Command::new(bin("driftwatch-collector")).args(["verify", "--from", &from, "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    names.drop_database().await;
}

/// `driftwatch-collector dead-letters list` and `replay`: a snapshot
/// refused for a limit set too low is listed with its reason; once the
/// limit is raised, replay produces it again, signed as it was, and it is
/// evaluated; a second replay replays nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_once_after_a_fix() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config(work.path(), "http://127.0.0.1:9/hook");
    create_topics(&cfg);
    let normal = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{normal}limits:\n  max_facts: 1\n")).unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(bin("driftwatch-collector")).arg("dead-letters").args(args).arg("--config").arg(&cfg).output().unwrap();
        assert!(out.status.success(), "dead-letters {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    // 1. Refused for a limit: dead-lettered, listed with the reason.
    let mut collector = spawn_collector(work.path(), "before", &cfg);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("asset");
    let facts = [("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "no")];
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &facts)).await;
    let listed = wait_for("the dead letter to be listed", 60, async || {
        let (out, _) = cli(&["list", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["topic"], names.topic("snapshots"));
    assert!(listed[0]["reason"].as_str().unwrap().contains("max_facts"), "{listed:?}");
    assert_eq!(listed[0]["truncated"], false);
    let (text, _) = cli(&["list"]);
    assert!(text.contains("max_facts") && text.contains(&names.topic("snapshots")), "{text}");
    assert!(collector.terminate(30), "the collector stops");

    // 2. The limit raised: replayed, signed as it was, so evaluated.
    std::fs::write(&cfg, &normal).unwrap();
    let (would, said) = cli(&["replay", "--dry-run"]);
    assert!(would.contains("would replay") && said.contains("1 dead letter(s) would be replayed"), "{would}{said}");
    let _collector = spawn_collector(work.path(), "after", &cfg);
    let (_, said) = cli(&["replay"]);
    assert!(said.contains("1 dead letter(s) replayed"), "{said}");
    wait_status(&names.database, &asset, "linux.sshd.root_login_disabled", None, "pass", 90).await;

    // 3. Once only.
    let (_, said) = cli(&["replay"]);
    assert!(said.contains("0 dead letter(s) replayed") && said.contains("0 read from"), "{said}");
    names.drop_database().await;
}
