//! Drift, detections, hot reload and scores against the real broker and
//! ClickHouse: a configuration change preceded by an audit event becomes a
//! drift row naming that event; three failed logins open a detection; a
//! broken pack is rejected while a valid one is swapped in live; and the
//! `posture`, `gaps` and `effectiveness` commands compute from what was
//! stored.

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use driftwatch_schemas::{Actor, AuditEvent, AuditSource, Message, Outcome, SnapshotKind};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

fn audit(asset: &str, id: &str, action: &str, user: &str, object: Option<&str>) -> Message {
    Message::Audit(AuditEvent {
        event_id: id.into(),
        asset_id: asset.into(),
        hostname: "web-1".into(),
        source: AuditSource::Auditd,
        timestamp: Utc::now(),
        actor: Actor { user: Some(user.into()), ..Default::default() },
        action: action.into(),
        object: object.map(String::from),
        outcome: Outcome::Failure,
        source_address: None,
        raw: String::new(),
        extra: Default::default(),
    })
}

fn cli(args: &[&str], cfg: &Path) -> Value {
    let out = Command::new(bin("driftwatch-collector")).args(args).arg("--config").arg(cfg).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_detections_reload_and_scores() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = work.path().join("policies");
    std::fs::create_dir_all(&packs).unwrap();
    let fixtures = repo().join("tests/fixtures/packs/drift");
    std::fs::copy(fixtures.join("pack.yaml"), packs.join("pack.yaml")).unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &packs);
    // Record scores every second (the posture dashboard's history), and
    // alert on a posture below 90.
    let mut text = std::fs::read_to_string(&cfg).unwrap().replacen("alerts:\n", "alerts:\n  posture: {min_score: 90}\n", 1);
    text.push_str("evaluation:\n  score_interval_secs: 1\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let started = Utc::now() - chrono::Duration::seconds(2);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("web");
    let db = names.database.clone();

    // 1. Passing, then someone edits sshd_config (auditd saw it), then the delta.
    produce(
        &producer,
        &names,
        &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "no")]),
    )
    .await;
    let a = asset.clone();
    let first = wait_for("the first evaluation", 60, async || {
        let rows = try_query(&format!(
            "SELECT status, toUInt32(evaluated_at) AS at FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 't.root_login'"
        ))
        .await
        .ok()?;
        rows.first().cloned()
    })
    .await;
    let first_at = first["at"].as_u64().or_else(|| first["at"].as_str().and_then(|s| s.parse().ok())).unwrap() as i64;
    // The regression comes at least a second later (DateTime resolution),
    // so the posture at the first evaluation is the passing one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    produce(&producer, &names, &audit(&asset, "edit-1", "syscall", "mallory", Some("/etc/ssh/sshd_config"))).await;
    produce(&producer, &names, &snapshot(&asset, 2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "yes")])).await;
    let drift = wait_for("the drift event", 60, async || {
        let rows = try_query(&format!(
            "SELECT direction, from_status, to_status, before, after, changed, cause_event_id, cause_user, cause_matched \
             FROM {db}.drift_events WHERE asset_id = '{a}'"
        ))
        .await
        .ok()?;
        rows.into_iter().next()
    })
    .await;
    assert_eq!(
        (drift["direction"].as_str(), drift["from_status"].as_str(), drift["to_status"].as_str()),
        (Some("regressed"), Some("pass"), Some("fail"))
    );
    assert_eq!(drift["before"], r#"{"sshd.config.permitrootlogin":"no"}"#);
    assert_eq!(drift["after"], r#"{"sshd.config.permitrootlogin":"yes"}"#);
    assert_eq!(drift["changed"], serde_json::json!(["sshd.config.permitrootlogin"]));
    assert_eq!((drift["cause_event_id"].as_str(), drift["cause_user"].as_str()), (Some("edit-1"), Some("mallory")));
    assert_eq!(drift["cause_matched"], "/etc/ssh/sshd_config");

    // 2. Three failed logins for one user: the detection opens a violation.
    for i in 0..3 {
        produce(&producer, &names, &audit(&asset, &format!("fail-{i}"), "ssh_login_failed", "alice", None)).await;
    }
    let det = wait_for("the detection's violation", 60, async || {
        let rows =
            try_query(&format!("SELECT event, evidence FROM {db}.violations WHERE asset_id = '{a}' AND control_id = 't.brute_force'"))
                .await
                .ok()?;
        rows.into_iter().next()
    })
    .await;
    assert_eq!(det["event"], "opened");
    assert!(det["evidence"].as_str().unwrap().contains(r#""detect.group":"alice""#), "{det}");

    // 3. A broken pack is rejected whole; the running set stays.
    std::fs::write(
        packs.join("broken.yaml"),
        "pack: broken\ncontrols:\n  - id: b\n    title: b\n    severity: high\n    check: 'x =='\n    frameworks: {soc2: [CC6.1]}\n",
    )
    .unwrap();
    wait_for("the broken pack to be rejected", 30, async || collector.log().contains("invalid; keeping the running set").then_some(()))
        .await;
    assert!(collector.log().contains("broken.yaml:3: control b: check does not compile"), "{}", collector.log());
    // ... and once fixed (removed) with a new pack added, the new control runs on the known asset.
    std::fs::remove_file(packs.join("broken.yaml")).unwrap();
    std::fs::copy(fixtures.join("extra.yaml.later"), packs.join("extra.yaml")).unwrap();
    wait_for("the reloaded control to evaluate the known asset", 60, async || {
        let rows =
            try_query(&format!("SELECT status FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 't.x11_off'")).await.ok()?;
        rows.first().filter(|r| r["status"] == "pass").cloned()
    })
    .await;
    // The controls catalog (dashboards read mappings there) follows the reload.
    let catalog = wait_for("the reloaded control in the catalog", 30, async || {
        let rows =
            try_query(&format!("SELECT pack, severity, frameworks FROM {db}.controls FINAL WHERE control_id = 't.x11_off'")).await.ok()?;
        rows.into_iter().next()
    })
    .await;
    assert_eq!(
        (catalog["pack"].as_str(), catalog["severity"].as_str(), catalog["frameworks"].to_string()),
        (Some("drift-test-extra"), Some("low"), r#"["pci-dss:2.2.6","soc2:CC6.6"]"#.to_string()),
        "{catalog}"
    );

    // 4. Scores: soc2 CC6.1 fail (root), CC7.2 fail (brute force), CC6.6 pass (x11) → 33.33;
    //    pci-dss 2.2.6 partial (root fails, x11 passes), 10.2.1 fail → 25.
    let posture = cli(&["posture"], &cfg);
    let score = |fw: &str| posture.as_array().unwrap().iter().find(|s| s["framework"] == fw).map(|s| s["score"].as_f64().unwrap());
    assert_eq!((score("soc2"), score("pci-dss")), (Some(33.33), Some(25.0)), "{posture:#}");
    // Each score says what it covers: 3 of SOC 2's 61 criteria have
    // evidence, 2 of PCI DSS's 260 requirements.
    let soc2 = posture.as_array().unwrap().iter().find(|s| s["framework"] == "soc2").unwrap();
    assert_eq!(
        (soc2["catalog_requirements"].as_u64(), soc2["not_assessed"].as_u64(), soc2["coverage"].as_f64()),
        (Some(61), Some(58), Some(4.92))
    );
    let pci = posture.as_array().unwrap().iter().find(|s| s["framework"] == "pci-dss").unwrap();
    assert_eq!((pci["catalog_requirements"].as_u64(), pci["coverage"].as_f64()), (Some(260), Some(0.77)), "{pci}");
    // Per SOC 2 category: all three criteria are common criteria (security, 33 of them).
    let by_section = cli(&["posture", "--by", "section", "--framework", "soc2"], &cfg);
    assert_eq!(
        (by_section[0]["group"].as_str(), by_section[0]["catalog_requirements"].as_u64()),
        (Some("security"), Some(33)),
        "{by_section:#}"
    );
    let by_team = cli(&["posture", "--by", "label:team", "--framework", "soc2"], &cfg);
    assert_eq!(by_team[0]["group"], "web");
    // The same numbers are recorded over time for the dashboards.
    let recorded = wait_for("recorded scores", 30, async || {
        let rows = try_query(&format!(
            "SELECT scope, label_key, group_value, score, coverage FROM {db}.scores WHERE framework = 'soc2' ORDER BY at DESC, scope LIMIT 2"
        ))
        .await
        .ok()?;
        (rows.len() == 2 && rows.iter().all(|r| r["score"].as_f64() == Some(33.33))).then_some(rows)
    })
    .await;
    assert!(recorded.iter().any(|r| r["scope"] == "label" && r["label_key"] == "team" && r["group_value"] == "web"), "{recorded:?}");
    assert!(recorded.iter().all(|r| r["coverage"].as_f64() == Some(4.92)), "coverage recorded beside the score: {recorded:?}");
    // SOC 2 has been below the floor of 90 since its first score: the
    // posture alert fired then, saying the score and what it covers.
    let floor = wait_for("the posture alert", 30, async || {
        notified_alerts(&receiver.all())
            .into_iter()
            .find(|a| a["alertname"] == "posture_below_floor" && a["labels"]["framework"] == "soc2" && a["status"] == "firing")
    })
    .await;
    let summary = floor["annotations"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("SOC 2 (2017 TSC) score ") && summary.ends_with(" is below 90.0"), "{floor}");
    assert!(floor["annotations"]["coverage"].as_str().unwrap().starts_with("coverage "), "{floor}");
    let fired = notified_alerts(&receiver.all())
        .into_iter()
        .filter(|a| a["alertname"] == "posture_below_floor" && a["labels"]["framework"] == "soc2" && a["status"] == "firing")
        .count();
    assert_eq!(fired, 1, "notified once while it holds, not at every recording");

    // Point in time: at the first evaluation root login passed, and no
    // other soc2 check had a result: 100.
    let then = chrono::DateTime::from_timestamp(first_at, 0).unwrap().to_rfc3339();
    let past = cli(&["posture", "--framework", "soc2", "--at", &then], &cfg);
    assert_eq!((past[0]["score"].as_f64(), past[0]["applicable"].as_u64()), (Some(100.0), Some(1)), "{past:#}");

    let gaps = cli(&["gaps", "--framework", "soc2"], &cfg);
    let cc61 = gaps.as_array().unwrap().iter().find(|g| g["requirement"] == "CC6.1").expect("CC6.1 gap");
    assert_eq!((cc61["severity"].as_str(), cc61["owners"][0].as_str()), (Some("high"), Some("web")));
    let (first, due) = (cc61["first_seen"].as_str().unwrap(), cc61["due"].as_str().unwrap());
    let days = chrono::DateTime::parse_from_rfc3339(due).unwrap() - chrono::DateTime::parse_from_rfc3339(first).unwrap();
    assert_eq!(days.num_days(), 30, "high severity: 30 days");
    // What to do about it: the control's remediation and rationale.
    let fix = cc61["fixes"].as_array().unwrap().iter().find(|f| f["control_id"] == "t.root_login").expect("root login's fix");
    assert_eq!(fix["remediation"], "Set `PermitRootLogin no` in /etc/ssh/sshd_config and reload sshd.");
    assert!(fix["rationale"].as_str().unwrap().starts_with("Direct root logins"), "{fix}");
    // Filtered: the web team's gaps are these; nobody else has any, and none is critical.
    assert_eq!(cli(&["gaps", "--framework", "soc2", "--owner", "web"], &cfg), gaps);
    assert_eq!(cli(&["gaps", "--framework", "soc2", "--owner", "db"], &cfg), serde_json::json!([]));
    assert_eq!(cli(&["gaps", "--framework", "soc2", "--severity", "critical"], &cfg), serde_json::json!([]));
    let text = Command::new(bin("driftwatch-collector")).args(["gaps", "--framework", "soc2", "--config"]).arg(&cfg).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("    fix t.root_login: Set `PermitRootLogin no` in /etc/ssh/sshd_config and reload sshd."), "{text}");

    let from = started.to_rfc3339();
    let eff = cli(&["effectiveness", "--from", &from, "--asset", &asset, "--framework", "soc2"], &cfg);
    let root = eff.as_array().unwrap().iter().find(|e| e["subject"] == "t.root_login").expect("root login effectiveness");
    let intervals = root["not_passing"].as_array().unwrap();
    assert_eq!(intervals.len(), 1, "{root:#}");
    assert_eq!(intervals[0]["status"], "fail");
    assert!(root["pass_share"].as_f64().unwrap() < 1.0);
    assert!(eff.as_array().unwrap().iter().any(|e| e["subject"] == "soc2:CC6.1"));

    drop(collector);
    names.drop_database().await;
}
