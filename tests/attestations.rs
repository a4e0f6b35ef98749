//! Attestations against the real broker and ClickHouse: an attested
//! control's evidence files are stored with their SHA-256 (a file whose
//! bytes are not its type is refused by name), its result is written into
//! the evidence chain and counted as attested coverage, reminders fire
//! before and at expiry, the result turns `unknown` when it expires, the
//! files come back intact, and `verify` names a file that went missing.

use std::process::Command;

use driftwatch_tests::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ORG_PACK: &str = r#"pack: org-test
controls:
  - id: t.restore_test
    title: Backups restored in a test
    severity: medium
    attest:
      owner: platform-team
      cadence: 8s
      remind_before: 4s
      evidence: The restore run's log.
    remediation: Restore last night's backup into a scratch environment and attest the run.
    frameworks: {soc2: [A1.3]}
"#;

const PDF: &[u8] = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_controls_from_evidence_to_coverage_reminders_and_expiry() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let packs = work.path().join("policies");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(repo().join("tests/fixtures/packs/drift/pack.yaml"), packs.join("pack.yaml")).unwrap();
    std::fs::write(packs.join("org.yaml"), ORG_PACK).unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), &format!("http://{addr}/hook"), &packs);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("evaluation:\n  score_interval_secs: 1\nattestations:\n  check_secs: 1\n  max_file_bytes: 4096\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let started = chrono::Utc::now() - chrono::Duration::seconds(2);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let db = names.database.clone();
    // The collector has migrated the database (the CLI would migrate too).
    let migrations = driftwatch_schemas::clickhouse::MIGRATIONS.len() as u64;
    wait_for("the migrations", 60, async || {
        let rows = try_query(&format!("SELECT count() AS n FROM {db}.schema_migrations")).await.ok()?;
        (count(&rows.first()?["n"]) >= migrations).then_some(())
    })
    .await;

    // Evidence files: a PDF and a CSV; and one that lies about its type.
    let (pdf, csv, fake) = (work.path().join("review.pdf"), work.path().join("accounts.csv"), work.path().join("scan.pdf"));
    std::fs::write(&pdf, PDF).unwrap();
    std::fs::write(&csv, "account,decision\nbob,keep\neve,remove\n").unwrap();
    std::fs::write(&fake, "<html>a web page</html>").unwrap();
    let err = collector_err(
        &["attestation", "add", "t.access_review", "--by", "alice", "--statement", "x", "--file", fake.to_str().unwrap()],
        &cfg,
    );
    assert!(err.contains("file \"scan.pdf\": declared application/pdf but its bytes are text"), "{err}");
    let big = work.path().join("big.txt");
    std::fs::write(&big, "x".repeat(5000)).unwrap();
    let err =
        collector_err(&["attestation", "add", "t.access_review", "--by", "a", "--statement", "x", "--file", big.to_str().unwrap()], &cfg);
    assert!(err.contains("larger than 4096 bytes (attestations.max_file_bytes)"), "{err}");
    assert!(collector_err(&["attestation", "add", "t.root_login", "--by", "a", "--statement", "x"], &cfg)
        .contains("control t.root_login is a check"));

    let out = collector_ok(
        &[
            "attestation",
            "add",
            "t.access_review",
            "--by",
            "alice",
            "--statement",
            "Reviewed all 41 accounts; 3 removed.",
            "--file",
            pdf.to_str().unwrap(),
            "--file",
            csv.to_str().unwrap(),
        ],
        &cfg,
    );
    let pdf_sha = hex::encode(Sha256::digest(PDF));
    assert!(out.contains(&format!("review.pdf sha256:{pdf_sha}")), "{out}");
    let csv_sha = hex::encode(Sha256::digest(std::fs::read(&csv).unwrap()));

    // Its result: pass, on the organisation, evidence naming each file's digest.
    wait_status(&db, "organization", "t.access_review", None, "pass", 60).await;
    let e = query(&format!("SELECT evidence, message, batch_id FROM {db}.evaluations WHERE control_id = 't.access_review'")).await;
    assert_eq!(e.len(), 1, "written once: {e:?}");
    assert!(e[0]["evidence"].as_str().unwrap().contains(&format!("sha256:{pdf_sha}")), "{e:?}");
    assert!(e[0]["message"].as_str().unwrap().starts_with("attested by alice on "), "{e:?}");
    let batch = e[0]["batch_id"].as_str().unwrap();
    assert_eq!(number(&format!("SELECT count() AS n FROM {db}.evidence_chain WHERE batch_id = '{batch}'")).await, 1, "sealed in a chain");

    // Coverage: SOC 2's CC6.2 has attested evidence only.
    let posture = collector_json(&["posture", "--framework", "soc2"], &cfg);
    let soc2 = &posture[0];
    assert_eq!((soc2["applicable"].as_u64(), soc2["attested"].as_u64(), soc2["passing"].as_u64()), (Some(1), Some(1), Some(1)), "{soc2}");
    assert_eq!(soc2["not_assessed"], 60, "{soc2}");
    wait_for("the attested count recorded with the scores", 30, async || {
        let rows = try_query(&format!("SELECT attested FROM {db}.scores WHERE framework = 'soc2' AND scope = 'fleet' AND attested = 1"))
            .await
            .ok()?;
        (!rows.is_empty()).then_some(())
    })
    .await;
    let list = collector_json(&["attestation", "list"], &cfg);
    let review = list.as_array().unwrap().iter().find(|l| l["control_id"] == "t.access_review").unwrap();
    assert_eq!(
        (review["state"].as_str(), review["owner"].as_str(), review["cadence_days"].as_i64()),
        (Some("holding"), Some("security-team"), Some(90))
    );
    let never = list.as_array().unwrap().iter().find(|l| l["control_id"] == "t.restore_test").unwrap();
    assert_eq!((never["state"].as_str(), &never["status"]), (Some("never"), &Value::Null), "never attested: not assessed");

    // The file comes back as attested.
    let back = work.path().join("back.pdf");
    collector_ok(&["attestation", "file", &pdf_sha, "--out", back.to_str().unwrap()], &cfg);
    assert_eq!(std::fs::read(&back).unwrap(), PDF);

    // A short cadence: the reminder, then expiry (unknown) and its alert.
    let log = work.path().join("restore.txt");
    std::fs::write(&log, "restored 12 GB in 4m10s; checksums match\n").unwrap();
    collector_ok(
        &["attestation", "add", "t.restore_test", "--by", "bob", "--statement", "Restored into scratch.", "--file", log.to_str().unwrap()],
        &cfg,
    );
    wait_status(&db, "organization", "t.restore_test", None, "pass", 30).await;
    let due = wait_for("the attestation_due reminder", 30, async || {
        notified_alerts(&receiver.all()).into_iter().find(|a| a["alertname"] == "attestation_due" && a["status"] == "firing")
    })
    .await;
    assert_eq!((due["control_id"].as_str(), due["labels"]["owner"].as_str()), (Some("t.restore_test"), Some("platform-team")), "{due}");
    wait_status(&db, "organization", "t.restore_test", None, "unknown", 30).await;
    let expired = wait_for("the attestation_expired alert", 30, async || {
        notified_alerts(&receiver.all()).into_iter().find(|a| a["alertname"] == "attestation_expired" && a["status"] == "firing")
    })
    .await;
    assert!(expired["annotations"]["summary"].as_str().unwrap().contains("the result is unknown"), "{expired}");
    let m = query(&format!("SELECT message FROM {db}.evaluations WHERE control_id = 't.restore_test' AND status = 'unknown'")).await;
    assert!(m[0]["message"].as_str().unwrap().starts_with("attestation_expired: attested by bob"), "{m:?}");

    // verify: every file checked; a file gone is named.
    let from = started.to_rfc3339();
    let intact = collector_ok(&["verify", "--from", &from], &cfg);
    assert!(intact.contains("3 attested evidence files checked: intact"), "{intact}");
    exec(&format!("ALTER TABLE {db}.attestation_files DELETE WHERE sha256 = '{csv_sha}'")).await;
    let broken = wait_for("verify to notice the missing file", 30, async || {
        let out = driftwatch_tests::collector(&["verify", "--from", &from], &cfg);
        (out.status.code() == Some(1)).then(|| String::from_utf8(out.stdout).unwrap())
    })
    .await;
    assert!(broken.contains(&format!("evidence file accounts.csv (SHA-256 {csv_sha}) is missing")), "{broken}");
    drop(collector);
    names.drop_database().await;
}
