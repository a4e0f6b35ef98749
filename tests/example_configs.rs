//! The annotated example configurations in `deploy/local/` stay valid, and
//! a broken one is reported with its location.

use std::process::Command;

use driftwatch_tests::{bin, repo, services_up};

fn check(binary: &str, config: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin(binary)).args(["check-config", "--config"]).arg(config).current_dir(repo()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn examples_are_valid() {
    services_up();
    let (ok, text) = check("driftwatch-agent", &repo().join("deploy/local/agent.yaml"));
    assert!(ok, "{text}");
    let (ok, text) = check("driftwatch-collector", &repo().join("deploy/local/collector.yaml"));
    assert!(ok, "{text}");
    assert!(text.contains(" controls, 0 declared waivers in policies"), "{text}");
}

#[test]
fn errors_name_the_file_line_and_field() {
    services_up();
    let d = tempfile::tempdir().unwrap();
    let agent = d.path().join("agent.yaml");
    std::fs::write(&agent, "kafka:\n  brokers: x:9092\naudit:\n  poll_ms: 0\n  authlog: [var/log/auth.log]\n").unwrap();
    let (ok, text) = check("driftwatch-agent", &agent);
    assert!(!ok);
    assert!(text.contains("audit.poll_ms: must be at least 1") && text.contains("audit.authlog[0]"), "{text}");
    let collector = d.path().join("collector.yaml");
    std::fs::write(&collector, "clickhouse:\n  url: http://127.0.0.1:8123\n  databse: x\n").unwrap();
    let (ok, text) = check("driftwatch-collector", &collector);
    assert!(!ok);
    assert!(text.contains(&format!("{}:3:", collector.display())) && text.contains("databse"), "{text}");
}

/// A secret given as a file reference reaches the component that uses it:
/// here the ClickHouse database name, read from a file, is the one the
/// collector creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_read_secrets_from_files() {
    services_up();
    let d = tempfile::tempdir().unwrap();
    let names = driftwatch_tests::Names::new();
    let cfg = names.collector_config(d.path(), "http://127.0.0.1:9/hook");
    let secret = d.path().join("database");
    std::fs::write(&secret, format!("{}\n", names.database)).unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("database: {}", names.database), &format!("database: {{file: {}}}", secret.display()));
    assert!(text.contains("{file:"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(bin("driftwatch-collector")).args(["posture", "--format", "json", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dbs = driftwatch_tests::query(&format!("SELECT name FROM system.databases WHERE name = '{}'", names.database)).await;
    assert_eq!(dbs.len(), 1, "the database named in the file was created");
    names.drop_database().await;
}
