//! Waivers against the real broker and ClickHouse: a declared waiver turns
//! a failing control into `waived` (no violation, scores with and without
//! waivers), reminds before it expires, and when it expires the control
//! fails again and the violation is alerted. A requirement waiver made
//! with the CLI counts for its framework only, is revoked with the CLI,
//! and both changes are in the audit table. Waivers that cannot take
//! effect are flagged.

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

fn cli(cfg: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("driftwatch-collector")).args(args).arg("--config").arg(cfg).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn score(cfg: &Path, framework: &str, at: Option<&str>) -> Value {
    let mut args = vec!["posture", "--format", "json", "--framework", framework];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let v: Value = serde_json::from_str(&cli(cfg, &args)).unwrap();
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waivers_exempt_remind_expire_and_count_apart() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = work.path().join("policies");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(repo().join("tests/fixtures/packs/drift/pack.yaml"), packs.join("pack.yaml")).unwrap();
    let asset = unique("legacy");
    let expires = Utc::now() + chrono::Duration::seconds(25);
    std::fs::write(
        packs.join("waivers.yaml"),
        format!(
            "waivers:\n  - id: legacy-root\n    control: t.root_login\n    scope: {{assets: [{asset}]}}\n    justification: vendor appliance needs root until its migration\n    approver: ciso@example.com\n    risk: high\n    ticket: SEC-42\n    expires: {}\n  - id: stale-one\n    control: t.gone\n    scope: {{fleet: true}}\n    justification: j\n    approver: a\n    risk: low\n    expires: 2100-01-01T00:00:00Z\n  - id: nobody\n    control: t.root_login\n    scope: {{assets: [no-such-asset]}}\n    justification: j\n    approver: a\n    risk: low\n    expires: 2100-01-01T00:00:00Z\n",
            expires.to_rfc3339()
        ),
    )
    .unwrap();
    // The check command flags what cannot take effect, offline.
    let out = Command::new(bin("driftwatch-collector")).args(["policies", "check"]).arg(&packs).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("waivers.yaml:10: waiver stale-one: control \"t.gone\" does not exist"), "{stderr}");

    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &packs);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("evaluation:\n  tick_ms: 500\nwaivers:\n  refresh_secs: 1\n  reminder_days: 1\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let db = names.database.clone();
    let a = asset.clone();

    // 1. The control fails, and is waived: stored as `waived`, no violation.
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    let waived = wait_for("the waived result", 60, async || {
        let rows =
            try_query(&format!("SELECT status, message FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 't.root_login'"))
                .await
                .ok()?;
        rows.into_iter().next()
    })
    .await;
    assert_eq!(waived["status"], "waived");
    let message = waived["message"].as_str().unwrap();
    assert!(
        message.starts_with("waived by legacy-root until") && message.contains("approved by ciso@example.com, risk high, SEC-42"),
        "{message}"
    );
    let waived_at = Utc::now().to_rfc3339();

    // The declared waiver is recorded with where it was declared.
    let stored = wait_for("the declared waiver in the store", 30, async || {
        try_query(&format!("SELECT source, created_by FROM {db}.waivers FINAL WHERE waiver_id = 'legacy-root'"))
            .await
            .ok()?
            .into_iter()
            .next()
    })
    .await;
    assert!(stored["source"].as_str().unwrap().ends_with("waivers.yaml:2"), "{stored}");
    assert_eq!(stored["created_by"], "policies");
    // 2. Scores count it apart: soc2 CC6.1 is met only thanks to the waiver.
    let soc2 = score(&cfg, "soc2", None);
    assert_eq!(
        (soc2["score"].as_f64(), soc2["score_without_waivers"].as_f64(), soc2["waived"].as_u64()),
        (Some(100.0), Some(0.0), Some(1)),
        "{soc2}"
    );

    // 3. A reminder before it expires.
    let reminder = wait_for("the expiry reminder", 30, async || {
        notified_alerts(&receiver.bodies.lock().unwrap())
            .into_iter()
            .find(|x| x["alertname"] == "waiver_expiring" && x["labels"]["waiver"] == "legacy-root" && x["status"] == "firing")
    })
    .await;
    assert!(reminder["annotations"]["summary"].as_str().unwrap().contains("expires in 0d 0h"), "{reminder}");
    let violation = |status: &'static str| {
        let a = asset.clone();
        move |bodies: &[Value]| {
            notified_alerts(bodies)
                .into_iter()
                .find(|x| x["alertname"] == "violation" && x["asset_id"] == a.as_str() && x["status"] == status)
        }
    };
    assert!(violation("firing")(&receiver.bodies.lock().unwrap()).is_none(), "no violation while waived");

    // 4. It expires: the control fails again, the violation is alerted, the reminder resolves.
    let reopened = wait_for("the violation after expiry", 60, async || violation("firing")(&receiver.bodies.lock().unwrap())).await;
    assert_eq!(reopened["control_id"], "t.root_login");
    assert!(Utc::now() >= expires);
    wait_for("the reminder to resolve", 30, async || {
        notified_alerts(&receiver.bodies.lock().unwrap())
            .into_iter()
            .find(|x| x["alertname"] == "waiver_expiring" && x["status"] == "resolved")
    })
    .await;
    let soc2 = score(&cfg, "soc2", None);
    assert_eq!((soc2["score"].as_f64(), soc2["waived"].as_u64()), (Some(0.0), Some(0)), "{soc2}");
    // Point in time: while the waiver was in force.
    let then = score(&cfg, "soc2", Some(&waived_at));
    assert_eq!((then["score"].as_f64(), then["waived"].as_u64()), (Some(100.0), Some(1)), "{then}");

    // 5. A requirement waiver made with the CLI: soc2 CC6.1 only, not pci-dss 2.2.6.
    let until = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let id = cli(
        &cfg,
        &[
            "waiver",
            "add",
            "--requirement",
            "soc2:CC6.1",
            "--asset",
            &asset,
            "--justification",
            "compensating control: bastion only",
            "--approver",
            "ciso@example.com",
            "--risk",
            "medium",
            "--ticket",
            "SEC-43",
            "--expires",
            &until,
            "--by",
            "tester",
        ],
    );
    let id = id.trim().to_string();
    let soc2 = score(&cfg, "soc2", None);
    assert_eq!((soc2["score"].as_f64(), soc2["score_without_waivers"].as_f64()), (Some(100.0), Some(0.0)), "{soc2}");
    let pci = score(&cfg, "pci-dss", None);
    assert_eq!(pci["score"].as_f64(), Some(0.0), "{pci}");
    let list: Value = serde_json::from_str(&cli(&cfg, &["waiver", "list", "--all", "--format", "json"])).unwrap();
    let ids: Vec<&str> = list.as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
    assert!(ids.contains(&"legacy-root") && ids.contains(&id.as_str()), "{list:#}");
    let current: Value = serde_json::from_str(&cli(&cfg, &["waiver", "list", "--format", "json"])).unwrap();
    assert!(!current.as_array().unwrap().iter().any(|w| w["id"] == "legacy-root"), "expired waivers are listed only with --all");
    // A declared waiver is changed in its file, not revoked here.
    let out = Command::new(bin("driftwatch-collector"))
        .args(["waiver", "revoke", "stale-one", "--by", "tester", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("remove it there"));
    cli(&cfg, &["waiver", "revoke", &id, "--by", "tester"]);
    let soc2 = score(&cfg, "soc2", None);
    assert_eq!(soc2["score"].as_f64(), Some(0.0), "{soc2}");
    let audit = query(&format!("SELECT path FROM {db}.api_audit WHERE key_name = 'cli:tester' ORDER BY at, path")).await;
    let paths: Vec<&str> = audit.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths, vec![format!("waiver add {id}"), format!("waiver revoke {id}")]);

    // Flags: a control that does not exist, a scope that matches no asset.
    wait_for("the flags in the log", 90, async || {
        let log = collector.log();
        (log.contains("waiver stale-one: control \"t.gone\" does not exist")
            && log.contains("waiver nobody: its scope matches no known asset"))
        .then_some(())
    })
    .await;

    drop(collector);
    names.drop_database().await;
}

/// A waiver declared while no collector ran takes effect when one starts,
/// over the posture it restores once partitions are assigned, without any
/// new record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiver_declared_while_the_collector_was_down_applies_at_its_start() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = work.path().join("policies");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(repo().join("tests/fixtures/packs/drift/pack.yaml"), packs.join("pack.yaml")).unwrap();
    let asset = unique("appliance");
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &packs);
    create_topics(&cfg);
    let run = || {
        let mut c = Command::new(bin("driftwatch-collector"));
        c.arg("run").arg("--config").arg(&cfg);
        c
    };
    let mut first = Proc::spawn("collector", &mut run(), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    let violation = |status: &str| {
        notified_alerts(&receiver.bodies.lock().unwrap())
            .into_iter()
            .find(|x| x["alertname"] == "violation" && x["asset_id"] == asset.as_str() && x["status"] == status)
    };
    wait_for("the violation", 60, async || violation("firing")).await;
    assert!(first.terminate(30), "the collector stops on SIGTERM");

    std::fs::write(
        packs.join("waivers.yaml"),
        format!(
            "waivers:\n  - id: appliance-root\n    control: t.root_login\n    scope: {{assets: [{asset}]}}\n    justification: vendor appliance\n    approver: ciso@example.com\n    risk: high\n    expires: 2100-01-01T00:00:00Z\n"
        ),
    )
    .unwrap();
    let _second = Proc::spawn("collector-again", &mut run(), work.path());
    let db = names.database.clone();
    let a = asset.clone();
    let waived = wait_for("the waived result after the restart", 60, async || {
        try_query(&format!(
            "SELECT status, message FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 't.root_login' AND status = 'waived'"
        ))
        .await
        .ok()?
        .into_iter()
        .next()
    })
    .await;
    assert!(waived["message"].as_str().unwrap().starts_with("waived by appliance-root"), "{waived}");
    // The asset has sent nothing since the restart: its resolve carries the
    // stored labels (team=web), so it resolves the alert that was notified.
    let resolved = wait_for("the violation's resolve", 60, async || violation("resolved")).await;
    assert_eq!(resolved["labels"]["team"], "web", "{resolved}");
    names.drop_database().await;
}
