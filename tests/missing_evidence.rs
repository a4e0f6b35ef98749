//! Missing evidence counts: against the real broker and ClickHouse, an
//! asset that stops reporting, an asset whose deltas were lost (a sequence
//! gap) and an asset whose file could not be read each yield `unknown`
//! with its reason, counted against the score; heartbeats keep an asset
//! current, and fresh evidence brings the results back.

use std::process::Command;

use chrono::Utc;
use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, Fact, FactValue, Message, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

/// A full snapshot where the shadow file could not be read.
fn unreadable(asset: &str) -> Message {
    Message::Snapshot(ConfigSnapshot {
        asset: Asset { id: asset.into(), kind: AssetKind::Host, hostname: asset.into(), labels: Default::default() },
        agent_id: "test".into(),
        agent_version: "0".into(),
        snapshot_id: format!("{asset}-1"),
        sequence: 1,
        collected_at: Utc::now(),
        kind: SnapshotKind::Full,
        facts: vec![
            Fact { path: "sshd.config.permitrootlogin".into(), value: "no".into() },
            Fact { path: "files.errors".into(), value: FactValue::List(vec!["/etc/shadow: Permission denied (os error 13)".into()]) },
        ],
        removed_paths: vec![],
    })
}

const GOOD: [(&str, &str); 2] = [("sshd.config.permitrootlogin", "no"), (r#"files["/etc/shadow"].mode"#, "0600")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_gaps_and_unreadable_facts_are_unknown() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = work.path().join("policies");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(repo().join("tests/fixtures/packs/evidence/pack.yaml"), packs.join("pack.yaml")).unwrap();
    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &packs);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("evaluation:\n  unknown_after_secs: 4\n  evidence_check_secs: 1\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let (silent, gap, unread) = (unique("silent"), unique("gap"), unique("unread"));
    let db = names.database.clone();

    // The gap and unreadable assets keep sending heartbeats; the silent one stops.
    let beating = {
        let (producer, names, gap, unread) = (producer.clone(), names.clone(), gap.clone(), unread.clone());
        tokio::spawn(async move {
            loop {
                produce(&producer, &names, &heartbeat(&gap)).await;
                produce(&producer, &names, &heartbeat(&unread)).await;
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            }
        })
    };
    produce(&producer, &names, &snapshot(&silent, 1, SnapshotKind::Full, &GOOD)).await;
    produce(&producer, &names, &snapshot(&gap, 1, SnapshotKind::Full, &GOOD)).await;
    produce(&producer, &names, &snapshot(&gap, 4, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no")])).await;
    produce(&producer, &names, &unreadable(&unread)).await;

    let latest = |asset: String| {
        let db = db.clone();
        async move || {
            let rows = try_query(&format!(
                "SELECT control_id, argMax(status, (evaluated_at, evaluated_ms)) AS status, argMax(message, (evaluated_at, evaluated_ms)) AS message \
                 FROM {db}.evaluations WHERE asset_id = '{asset}' GROUP BY control_id ORDER BY control_id"
            ))
            .await
            .ok()?;
            (rows.len() == 2).then_some(rows)
        }
    };
    let reason = |rows: &[Value], control: &str| -> (String, String) {
        let r = rows.iter().find(|r| r["control_id"] == control).unwrap();
        let msg = r["message"].as_str().unwrap_or_default();
        (r["status"].as_str().unwrap().to_string(), msg.split(':').next().unwrap_or_default().to_string())
    };

    // A sequence gap: every result unknown until a full snapshot.
    let f = latest(gap.clone());
    let rows = wait_for("the gap's unknown results", 60, async || f().await.filter(|r| r.iter().all(|x| x["status"] == "unknown"))).await;
    assert_eq!(reason(&rows, "t.root_login"), ("unknown".into(), "sequence_gap".into()), "{rows:?}");
    assert!(rows[0]["message"].as_str().unwrap().contains("deltas 2..3 were lost"), "{rows:?}");

    // Unreadable: the shadow check is unknown; root login (readable) passes.
    let f = latest(unread.clone());
    let rows = wait_for("the unreadable asset's results", 60, async || f().await).await;
    assert_eq!(reason(&rows, "t.shadow_mode"), ("unknown".into(), "fact_unreadable".into()), "{rows:?}");
    assert!(rows.iter().any(|r| r["message"].as_str().unwrap().contains("/etc/shadow: Permission denied")));
    assert_eq!(reason(&rows, "t.root_login").0, "pass");

    // Silent: both results become unknown, stamped when it went silent.
    let f = latest(silent.clone());
    let rows =
        wait_for("the silent asset's unknown results", 60, async || f().await.filter(|r| r.iter().all(|x| x["status"] == "unknown"))).await;
    assert_eq!(reason(&rows, "t.root_login"), ("unknown".into(), "asset_silent".into()), "{rows:?}");

    // Heartbeats kept the other two current: nothing of theirs went silent.
    let silenced =
        query(&format!("SELECT DISTINCT asset_id FROM {db}.evaluations WHERE status = 'unknown' AND message LIKE 'asset_silent%'")).await;
    assert_eq!(silenced.iter().filter_map(|r| r["asset_id"].as_str()).collect::<Vec<_>>(), vec![silent.as_str()]);

    // Unknown counts against the score like a failure.
    let out = Command::new(bin("driftwatch-collector"))
        .args(["posture", "--by", "asset", "--framework", "soc2", "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scores: Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |a: &str| scores.as_array().unwrap().iter().find(|s| s["group"] == a).map(|s| s["score"].as_f64().unwrap());
    // CC6.1: the silent and gap assets have no passing result; the unreadable one passes root login only.
    assert_eq!((of(&silent), of(&gap), of(&unread)), (Some(0.0), Some(0.0), Some(50.0)), "{scores:#}");

    // Fresh evidence brings results back.
    produce(&producer, &names, &snapshot(&gap, 5, SnapshotKind::Full, &GOOD)).await;
    produce(&producer, &names, &snapshot(&silent, 2, SnapshotKind::Full, &GOOD)).await;
    for asset in [&gap, &silent] {
        let f = latest(asset.clone());
        wait_for("the results to pass again", 60, async || f().await.filter(|r| r.iter().all(|x| x["status"] == "pass"))).await;
    }

    beating.abort();
    drop(collector);
    names.drop_database().await;
}
