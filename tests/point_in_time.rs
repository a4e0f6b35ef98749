//! Point-in-time posture and reports over a scripted history: evaluations
//! and waivers written to ClickHouse over four days, then `posture --at`
//! at chosen instants checked against hand-computed scores (with and
//! without waivers, unknown counting against), and `report` listing the
//! waivers in force during a period, in every format.

use std::path::Path;
use std::process::Command;

use driftwatch_tests::*;
use serde_json::Value;

fn run(cfg: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(bin("driftwatch-collector")).args(args).arg("--config").arg(cfg).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// (score, score without waivers) per framework at `at`.
fn scores_at(cfg: &Path, at: &str) -> Vec<(String, f64, f64)> {
    let v: Value = serde_json::from_slice(&run(cfg, &["posture", "--format", "json", "--at", at])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["framework"].as_str().unwrap().to_string(), s["score"].as_f64().unwrap(), s["score_without_waivers"].as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posture_at_past_instants_and_reports_follow_the_history() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = repo().join("tests/fixtures/packs/evidence");
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/unused", &packs);
    let db = names.database.clone();
    // Any command connects and migrates: the tables exist afterwards.
    run(&cfg, &["posture", "--format", "json"]);

    exec(&format!(
        "INSERT INTO {db}.snapshots (asset_id, asset_kind, hostname, label_keys, label_values, snapshot_id, sequence, kind, collected_at, received_at) VALUES \
         ('h1','host','h1',['team'],['web'],'h1-1',1,'full','2026-03-28 00:00:00','2026-03-28 00:00:00'), \
         ('h2','host','h2',['team'],['db'],'h2-1',1,'full','2026-03-28 00:00:00','2026-03-28 00:00:00')"
    ))
    .await;
    let ev = |asset: &str, control: &str, status: &str, at: &str, fw: &str| {
        format!("('{asset}','{control}','{status}','high','{at}','{asset}-{at}',1,{fw},'{{}}','','scripted',0)")
    };
    let (root, shadow) = ("['soc2:CC6.1','pci-dss:2.2.6']", "['soc2:CC6.1','pci-dss:7.2.1']");
    let rows = [
        ev("h1", "t.root_login", "pass", "2026-03-28 00:00:00", root),
        ev("h1", "t.shadow_mode", "pass", "2026-03-28 00:00:00", shadow),
        ev("h2", "t.root_login", "pass", "2026-03-28 00:00:00", root),
        ev("h2", "t.shadow_mode", "fail", "2026-03-28 00:00:00", shadow),
        ev("h2", "t.shadow_mode", "pass", "2026-03-29 12:00:00", shadow),
        ev("h1", "t.root_login", "fail", "2026-03-30 08:00:00", root),
        ev("h1", "t.root_login", "waived", "2026-03-30 20:00:00", root),
        ev("h2", "t.root_login", "unknown", "2026-03-31 06:00:00", root),
    ];
    exec(&format!("INSERT INTO {db}.evaluations VALUES {}", rows.join(", "))).await;
    // A requirement waiver for h2 on pci-dss 7.2.1 (28th 12:00 – 29th), and
    // the control waiver behind h1's `waived` result (from the 30th 20:00).
    exec(&format!(
        "INSERT INTO {db}.waivers VALUES \
         ('req-7.2.1','','pci-dss:7.2.1','{{\"assets\":[\"h2\"]}}','shadow file shared with the backup agent','ciso@example.com','medium','SEC-7','2026-03-28 12:00:00','2026-03-29 00:00:00','1970-01-01 00:00:00','','cli:alice','cli','2026-03-28 12:00:00',1), \
         ('root-h1','t.root_login','','{{\"assets\":[\"h1\"]}}','vendor appliance needs root login','ciso@example.com','high','SEC-8','2026-03-30 20:00:00','2026-04-30 00:00:00','1970-01-01 00:00:00','','cli:alice','cli','2026-03-30 20:00:00',1)"
    ))
    .await;

    // Hand-computed (score, without waivers) for soc2 (CC6.1) and pci-dss (2.2.6, 7.2.1).
    let expect = [
        ("2026-03-28T06:00:00Z", (50.0, 50.0), (75.0, 75.0)),     // h2 shadow fails
        ("2026-03-28T18:00:00Z", (50.0, 50.0), (100.0, 75.0)),    // ... waived for pci-dss 7.2.1 only
        ("2026-03-29T18:00:00Z", (100.0, 100.0), (100.0, 100.0)), // all pass
        ("2026-03-30T12:00:00Z", (50.0, 50.0), (75.0, 75.0)),     // h1 root login fails
        ("2026-03-30T22:00:00Z", (100.0, 50.0), (100.0, 75.0)),   // ... and is waived
        ("2026-03-31T12:00:00Z", (50.0, 50.0), (75.0, 50.0)),     // h2 root login unknown
    ];
    for (at, soc2, pci) in expect {
        let got = scores_at(&cfg, at);
        let of = |fw: &str| got.iter().find(|s| s.0 == fw).map(|s| (s.1, s.2));
        assert_eq!((of("soc2"), of("pci-dss")), (Some(soc2), Some(pci)), "at {at}: {got:?}");
    }

    // A report over the four days lists both waivers; one over a quiet stretch none.
    let period = ["--framework", "pci-dss", "--from", "2026-03-28T00:00:00Z", "--to", "2026-03-31T23:59:59Z"];
    let json: Value = serde_json::from_slice(&run(&cfg, &[&["report", "--format", "json"][..], &period[..]].concat())).unwrap();
    let ids: Vec<&str> = json["waivers"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, vec!["req-7.2.1", "root-h1"], "{json:#}");
    assert_eq!(json["waivers"][0]["justification"], "shadow file shared with the backup agent");
    assert_eq!(json["waivers"][0]["approver"], "ciso@example.com");
    let s = &json["summary"];
    assert_eq!(
        (s["score"].as_f64(), s["score_without_waivers"].as_f64(), s["score_at_start"].as_f64()),
        (Some(75.0), Some(50.0), Some(75.0))
    );
    assert_eq!((s["unknown_results"].as_u64(), s["assets"].as_u64()), (Some(1), Some(2)));
    let eff = s["effectiveness"].as_f64().unwrap();
    assert!(eff > 0.5 && eff < 1.0, "{eff}");
    // Every requirement of PCI DSS's catalog is listed, in its order; the
    // two the checks map to are assessed, the rest are not.
    let reqs = json["requirements"].as_array().unwrap();
    assert_eq!(reqs.len(), 260);
    assert_eq!((reqs[0]["id"].as_str(), reqs[0]["status"].as_str()), (Some("1.1.1"), None));
    let assessed: Vec<&Value> = reqs.iter().filter(|r| !r["status"].is_null()).collect();
    assert_eq!(assessed.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>(), vec!["2.2.6", "7.2.1"]);
    assert_eq!(assessed[0]["status"], "partial");
    assert_eq!(assessed[0]["checks"][0]["control_id"], "t.root_login");
    assert_eq!((s["catalog_requirements"].as_u64(), s["not_assessed"].as_u64()), (Some(260), Some(258)));

    let quiet = ["--framework", "pci-dss", "--from", "2026-03-29T06:00:00Z", "--to", "2026-03-30T06:00:00Z", "--format", "json"];
    let json: Value = serde_json::from_slice(&run(&cfg, &[&["report"][..], &quiet[..]].concat())).unwrap();
    assert_eq!(json["waivers"], serde_json::json!([]), "neither waiver was in force");

    let csv = String::from_utf8(run(&cfg, &[&["report", "--format", "csv"][..], &period[..]].concat())).unwrap();
    assert!(csv.starts_with("framework,requirement,requirement_status,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("pci-dss,7.2.1,pass,") && l.ends_with(",req-7.2.1")), "{csv}");
    let out = work.path().join("report.html");
    run(&cfg, &[&["report", "--format", "html", "--output", out.to_str().unwrap()][..], &period[..]].concat());
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("PCI DSS") && html.contains("vendor appliance needs root login") && !html.contains("<script"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained: no external resources");
    let pdf = run(&cfg, &[&["report", "--format", "pdf"][..], &period[..]].concat());
    assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"), "a PDF");
    assert!(String::from_utf8_lossy(&pdf).contains("(req-7.2.1: exempts pci-dss:7.2.1"), "the waiver is in the PDF's text");

    names.drop_database().await;
}
