//! Gaps tracked to closure against the real broker and ClickHouse: a gap
//! is assigned and moved on through the CLI, every change kept in its
//! history and the audit table; accepting its risk makes a waiver of the
//! requirement that takes the gap off the list; a gap's reminder fires
//! at the webhook as its due date nears.

use std::process::Command;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_assigned_moved_on_reminded_and_its_risk_accepted() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &repo().join("tests/fixtures/packs/drift"));
    // Reminders 30 days ahead: a high gap is due in 30 days, so at once.
    let mut text = std::fs::read_to_string(&cfg).unwrap().replacen("alerts:\n", "alerts:\n  gaps: {days: [30, 7]}\n", 1);
    text.push_str("evaluation:\n  score_interval_secs: 1\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("gap");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    wait_status(&names.database, &asset, "t.root_login", None, "fail", 60).await;

    let gaps = collector_json(&["gaps", "--framework", "soc2"], &cfg);
    let gap = &gaps.as_array().unwrap()[0];
    assert_eq!((gap["id"].as_str(), gap["state"].as_str(), &gap["assignee"]), (Some("soc2:CC6.1"), Some("open"), &Value::Null), "{gaps}");

    // The reminder: due in 30 days (high), so the 30-day one holds.
    let due = wait_for("the gap_due reminder", 30, async || {
        notified_alerts(&receiver.all()).into_iter().find(|a| a["alertname"] == "gap_due" && a["labels"]["gap"] == "soc2:CC6.1")
    })
    .await;
    assert_eq!((due["labels"]["days"].as_str(), due["severity"].as_str()), (Some("30"), Some("high")), "{due}");
    assert!(due["annotations"]["remediation"].as_str().unwrap().contains("PermitRootLogin no"), "{due}");

    // Assigned, then in progress; each change kept.
    assert!(collector_ok(&["gap", "assign", "soc2:CC6.1", "--to", "alice", "--by", "bob"], &cfg).contains("soc2:CC6.1 open (alice)"));
    collector_ok(&["gap", "state", "soc2:CC6.1", "in_progress", "--by", "alice", "--note", "rolling out sshd_config"], &cfg);
    let text = collector_err(&["gap", "state", "soc2:CC6.1", "in_progress", "--by", "alice"], &cfg);
    assert!(text.contains("already in_progress"), "{text}");
    let text = collector_err(&["gap", "assign", "soc2:NOPE", "--to", "x", "--by", "y"], &cfg);
    assert!(text.contains("no requirement \"NOPE\" in framework \"soc2\""), "{text}");
    let mine = collector_json(&["gaps", "--assignee", "alice", "--state", "in_progress"], &cfg);
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert!(collector_json(&["gaps", "--state", "open"], &cfg).as_array().unwrap().iter().all(|g| g["id"] != "soc2:CC6.1"));

    // Risk accepted: a waiver of the requirement; the gap is met by it.
    let out = collector_ok(
        &[
            "gap",
            "accept-risk",
            "soc2:CC6.1",
            "--justification",
            "appliance; replaced in Q3",
            "--approver",
            "ciso",
            "--risk",
            "medium",
            "--expires",
            "2100-01-01T00:00:00Z",
            "--by",
            "alice",
        ],
        &cfg,
    );
    let waiver = out.lines().next().unwrap().strip_prefix("waiver ").unwrap().to_string();
    let waivers = collector_json(&["waiver", "list"], &cfg);
    let w = waivers.as_array().unwrap().iter().find(|w| w["id"] == waiver.as_str()).unwrap_or_else(|| panic!("{waivers}"));
    assert_eq!((w["requirement"].as_str(), w["scope"]["fleet"].as_bool()), (Some("soc2:CC6.1"), Some(true)), "{w}");
    let soc2 = collector_json(&["gaps", "--framework", "soc2"], &cfg);
    assert!(soc2.as_array().unwrap().iter().all(|g| g["id"] != "soc2:CC6.1"), "a risk accepted is not a gap: {soc2}");
    let history = collector_json(&["gap", "history", "soc2:CC6.1"], &cfg);
    let states: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["open", "in_progress", "risk_accepted"], "{history}");
    assert_eq!(history[2]["waiver_id"].as_str(), Some(waiver.as_str()));
    assert_eq!(history[1]["note"], "rolling out sshd_config");
    let db = names.database.clone();
    let audit = query(&format!("SELECT path FROM {db}.api_audit WHERE method = 'CLI' AND path LIKE 'gap %' ORDER BY at")).await;
    assert_eq!(audit.len(), 3, "{audit:?}");
    // The reminder resolves once the gap is no longer one.
    wait_for("the reminder to resolve", 30, async || {
        notified_alerts(&receiver.all()).into_iter().find(|a| a["alertname"] == "gap_due" && a["status"] == "resolved")
    })
    .await;
    drop(collector);
    names.drop_database().await;
}
