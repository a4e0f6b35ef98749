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
use serde_json::{json, Value};

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
    let (cfg, port) = names.collector_config_with_api(work.path(), &format!("http://{addr}/hook"), "");
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", BROKERS).set("message.max.bytes", "2000000").create().unwrap();
    let asset = unique("hostile");
    let mut enc = Encoder::new().unwrap();
    // Signed by the asset's own key: what a broken or compromised agent of
    // the asset could send is held to the limits too.
    let send = async |topic: String, payload: Vec<u8>| {
        let record = FutureRecord::to(&topic).key(asset.as_str()).payload(&payload).headers(signed_as(&asset, &payload));
        producer.send(record, Duration::from_secs(10)).await.unwrap();
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
    let forged = number(&format!("SELECT count() AS n FROM {} WHERE snapshot_id = '{asset}-forged'", results(&db))).await;
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
    assert!(letters[2].0.starts_with("message starts neither with the Avro single-object marker"), "{letters:?}");
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
    let (cfg, port) = names.collector_config_with_api(work.path(), "http://127.0.0.1:9/hook", "");
    // A ceiling of 1 MiB: over it from the start.
    let text = std::fs::read_to_string(&cfg).unwrap() + "evaluation: {memory_limit_mb: 1, tick_ms: 200}\n";
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

/// An agent speaks only for itself: once an asset's key is pinned (on its
/// agent's first record), a record for it signed by another key, unsigned,
/// or with a signature that does not verify is dead-lettered with the
/// reason and does not change the asset's posture; the other key is held
/// pending and a critical alert names it. An admin approving that key
/// (a reinstalled agent) makes it the asset's voice and revokes the old
/// one; a write key cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_not_signed_by_the_assets_key_are_refused_and_alerted() {
    use driftwatch_schemas::identity::KeyPair;

    services_up();
    let work = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let api = format!("  keys:\n{}{}", api_key("root", "admin-key", "admin"), api_key("ops", "ops-key", "write"));
    let (cfg, port) = names.collector_config_with_api(work.path(), &format!("http://{addr}/hook"), &api);
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let (asset, db) = (unique("victim"), names.database.clone());
    let topic = names.topic("snapshots");

    // The asset's agent: root login allowed, the control fails; its key is
    // pinned on this first record.
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    wait_status(&db, &asset, CONTROL, Some(&format!("{asset}-1")), "fail", 60).await;

    // A forger with write access to the topic "fixes" it three ways: with
    // its own key, unsigned, and with the agent's public key but a
    // signature it cannot make.
    let forger = KeyPair::from_seed(&[7; 32]);
    let mut enc = Encoder::new().unwrap();
    let forged = |seq: i64| {
        let Message::Snapshot(mut s) = snapshot(&asset, seq, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")]) else {
            unreachable!()
        };
        s.snapshot_id = format!("{asset}-forged-{seq}");
        Encoder::new().unwrap().encode(&Message::Snapshot(s)).unwrap()
    };
    let (by_forger, unsigned, bad_signature) = (forged(2), forged(3), forged(4));
    let stolen_name = signed_by(&agent_key(&asset), &forged(99));
    for (payload, headers) in [(&by_forger, Some(signed_by(&forger, &by_forger))), (&unsigned, None), (&bad_signature, Some(stolen_name))] {
        let mut record = FutureRecord::to(&topic).key(asset.as_str()).payload(payload);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    // The agent's next record is still its word.
    produce(&producer, &names, &snapshot(&asset, 5, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    wait_status(&db, &asset, CONTROL, Some(&format!("{asset}-5")), "fail", 60).await;
    let forged_rows = number(&format!("SELECT count() AS n FROM {db}.snapshots WHERE snapshot_id LIKE '{asset}-forged-%'")).await;
    assert_eq!(forged_rows, 0, "no forged snapshot stored");

    // Each forgery is a dead letter that says why.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", unique("dlq"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&names.topic("dead-letter")]).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("dead letters arrive").unwrap();
        reasons.push(header(&m, "driftwatch.reason").unwrap());
    }
    let (agent_fp, forger_fp) = (agent_key(&asset).public().fingerprint(), forger.public().fingerprint());
    assert!(reasons[0].contains(&format!("asset {asset} is pinned to {agent_fp}; this record is signed by {forger_fp}")), "{reasons:?}");
    assert!(reasons[1].starts_with(&format!("identity: unsigned record for asset {asset}")), "{reasons:?}");
    assert!(reasons[2].contains("the signature does not verify"), "{reasons:?}");

    // One critical alert per concern, naming the key to approve or revoke.
    let alerts = wait_for("the identity alerts", 30, async || {
        let a: Vec<Value> = notified_alerts(&receiver.all()).into_iter().filter(|a| a["alertname"] == "agent_identity").collect();
        (a.len() >= 3).then_some(a)
    })
    .await;
    let mut concerns: Vec<&str> = alerts.iter().map(|a| a["labels"]["concern"].as_str().unwrap()).collect();
    concerns.sort();
    assert_eq!(concerns, ["forged_signature", "key_changed", "unsigned"]);
    assert!(alerts.iter().all(|a| a["severity"] == "critical" && a["asset_id"] == asset.as_str()), "{alerts:?}");
    let changed = alerts.iter().find(|a| a["labels"]["concern"] == "key_changed").unwrap();
    let remediation = changed["annotations"]["remediation"].as_str().unwrap();
    assert!(remediation.contains(&format!("keys approve {asset} {forger_fp}")), "{remediation}");

    // The API lists the pinned key and the one held pending.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let keys: Value = http.get(format!("{base}/keys?asset={asset}")).bearer_auth("ops-key").send().await.unwrap().json().await.unwrap();
    let standing: Vec<(String, String, String)> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (k["fingerprint"].as_str().unwrap().into(), k["status"].as_str().unwrap().into(), k["decided_by"].as_str().unwrap().into())
        })
        .collect();
    let mut expected =
        vec![(agent_fp.clone(), "pinned".to_string(), "first use".to_string()), (forger_fp.clone(), "pending".into(), "collector".into())];
    expected.sort();
    assert_eq!(standing, expected);

    // Only an admin decides whose word the asset's records are.
    let decision = json!({"asset_id": asset, "fingerprint": forger_fp, "reason": "host reinstalled"});
    let r = http.post(format!("{base}/keys/approve")).bearer_auth("ops-key").json(&decision).send().await.unwrap();
    assert_eq!(r.status(), 403, "a write key cannot approve");
    let r = http.post(format!("{base}/keys/approve")).bearer_auth("admin-key").json(&decision).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bad = json!({"asset_id": asset, "fingerprint": "sha256:nope"});
    assert_eq!(http.post(format!("{base}/keys/revoke")).bearer_auth("admin-key").json(&bad).send().await.unwrap().status(), 400);

    // The new key speaks for the asset (once the collector reads the
    // decision: at the latest when it would refuse a record again), the
    // old one no more.
    let mut seq = 10;
    wait_for("a record signed by the approved key to be taken", 60, async || {
        seq += 1;
        let Message::Snapshot(mut s) = snapshot(&asset, seq, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")]) else {
            unreachable!()
        };
        s.snapshot_id = format!("{asset}-new-{seq}");
        let payload = enc.encode(&Message::Snapshot(s)).unwrap();
        let record = FutureRecord::to(&topic).key(asset.as_str()).payload(&payload).headers(signed_by(&forger, &payload));
        producer.send(record, Duration::from_secs(10)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n =
            number(&format!("SELECT count() AS n FROM {} WHERE snapshot_id LIKE '{asset}-new-%' AND status = 'pass'", results(&db))).await;
        (n > 0).then_some(())
    })
    .await;
    produce(&producer, &names, &snapshot(&asset, 100, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("the old key's record is refused").unwrap();
        if header(&m, "driftwatch.reason").unwrap().contains(&format!("key {agent_fp} is revoked")) {
            break;
        }
    }
    assert_eq!(number(&format!("SELECT count() AS n FROM {db}.snapshots WHERE snapshot_id = '{asset}-100'")).await, 0);

    // The command line shows the same standing, and names a bad key.
    let keys = |args: &[&str]| Command::new(bin("driftwatch-collector")).arg("keys").args(args).arg("--config").arg(&cfg).output().unwrap();
    let out = keys(&["list", "--asset", &asset, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status_of = |fp: &str| listed.as_array().unwrap().iter().find(|k| k["fingerprint"] == fp).map(|k| k["status"].clone());
    assert_eq!((status_of(&forger_fp), status_of(&agent_fp)), (Some(json!("pinned")), Some(json!("revoked"))), "{listed}");
    let out = keys(&["revoke", &asset, "sha256:00", "--by", "test"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is not a key fingerprint"));

    // Every decision is in the audit table, with its key's name.
    let audited = number(&format!(
        "SELECT count() AS n FROM {db}.api_audit WHERE key_name = 'root' AND path = '/api/v1/keys/approve' AND status = 200"
    ))
    .await;
    assert_eq!(audited, 1);
    assert!(collector.alive(), "{}", collector.log());
    names.drop_database().await;
}

/// A host's own labels decide nothing unless the operator trusts them: by
/// default they are kept as `host_<key>`, so a host that calls itself
/// `team=web, zone=dmz` neither routes its alerts to the web team nor
/// falls under a waiver scoped to the DMZ; labels the operator gives by
/// asset id do both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_own_labels_decide_nothing_by_default() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (everyone, everyone_addr) = Receiver::start().await;
    let (web, web_addr) = Receiver::start().await;
    let names = Names::new();
    let api = format!("  keys:\n{}", api_key("root", "admin-key", "admin"));
    let (cfg, port) = names.collector_config_with_api(work.path(), &format!("http://{everyone_addr}/hook"), &api);
    let suffix = unique("l");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            TRUSTED_HOST_LABELS,
            &format!(
                "assets:\n  labels:\n    - {{matchers: ['asset=~\"op-.*{suffix}\"'], labels: {{team: web}}}}\n    - {{matchers: ['asset=~\"op-dmz-.*\"'], labels: {{zone: dmz}}}}\n"
            ),
        )
        .replace("alerts:\n  receivers:\n", &format!("alerts:\n  receivers:\n    - name: web\n      webhook: {{url: \"http://{web_addr}/hook\"}}\n"))
        .replace("    group_interval: 1s\n", "    group_interval: 1s\n    routes:\n      - {matchers: ['team=\"web\"'], receiver: web}\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let http = reqwest::Client::new();
    let waivers = format!("http://127.0.0.1:{port}/api/v1/waivers");
    wait_for("the API", 60, async || http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.ok().filter(|r| r.status() == 200))
        .await;
    let waiver = json!({"control": CONTROL, "scope": {"labels": {"zone": "dmz"}}, "justification": "DMZ jump hosts", "risk": "low", "expires": "2100-01-01T00:00:00Z"});
    assert_eq!(http.post(&waivers).bearer_auth("admin-key").json(&waiver).send().await.unwrap().status(), 201);

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let (host, op, op_dmz) = (format!("host-{suffix}"), format!("op-{suffix}"), format!("op-dmz-{suffix}"));
    for a in [&host, &op, &op_dmz] {
        // Every one says team=web and zone=dmz of itself.
        let mut m = snapshot(a, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")]);
        if let Message::Snapshot(s) = &mut m {
            s.asset.labels.insert("zone".into(), "dmz".into());
        }
        produce(&producer, &names, &m).await;
    }
    let db = names.database.clone();
    wait_status(&db, &op_dmz, CONTROL, None, "waived", 60).await;
    wait_status(&db, &host, CONTROL, None, "fail", 60).await;
    wait_status(&db, &op, CONTROL, None, "fail", 60).await;

    let alerted =
        |r: &Receiver, asset: &str| notified_alerts(&r.all()).into_iter().find(|a| a["asset_id"] == asset && a["alertname"] == "violation");
    let to_web = wait_for("the operator-labelled asset's alert at the web team", 30, async || alerted(&web, &op)).await;
    assert_eq!(to_web["labels"]["team"], "web");
    let to_everyone = wait_for("the self-labelled asset's alert at the default receiver", 30, async || alerted(&everyone, &host)).await;
    assert_eq!((to_everyone["labels"]["host_team"].as_str(), to_everyone["labels"].get("team")), (Some("web"), None), "{to_everyone}");
    assert!(alerted(&web, &host).is_none(), "a host does not route itself");
    let keys = query(&format!("SELECT label_keys FROM {db}.snapshots WHERE asset_id = '{host}'")).await;
    assert_eq!(keys[0]["label_keys"], json!(["host_team", "host_zone"]), "stored as it decided");
    drop(collector);
    names.drop_database().await;
}
