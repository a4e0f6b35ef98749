//! The DDL and the collector's queries run on a current ClickHouse engine
//! (chDB 26.x), not only on the 18.16 server the other tests use.

use std::process::Command;

use driftwatch_tests::{repo, services_up};

#[test]
fn migrations_and_queries_run_on_current_clickhouse() {
    services_up(); // installs chdb-core when missing
    let r = repo();
    let queries: Vec<_> = std::fs::read_dir(r.join("schemas/clickhouse/queries")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!queries.is_empty());
    let out = Command::new("python3")
        .arg(r.join("tests/chdb/check_sql.py"))
        .arg(r.join("schemas/clickhouse"))
        .args(&queries)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failures"), "{stdout}");
    assert!(stdout.starts_with("chdb 26."), "a current engine: {stdout}");
}

#[test]
fn the_checker_reports_bad_sql() {
    services_up();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("0001_bad.sql"), "CREATE TABLE IF NOT EXISTS t (a Strin) ENGINE = MergeTree() ORDER BY a;\n").unwrap();
    let out = Command::new("python3").arg(repo().join("tests/chdb/check_sql.py")).arg(d.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0001_bad.sql") && stderr.contains("Strin"), "{stderr}");
}
