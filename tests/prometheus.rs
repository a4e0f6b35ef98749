//! The Prometheus side, with Debian's `promtool` (installed by
//! `deploy/local/services`): the shipped alerting rules
//! (`deploy/prometheus/driftwatch.rules.yml`) are valid and pass their unit
//! tests (`driftwatch.rules.test.yml`: each alert with the series that
//! should and should not fire it), every metric they read is one a
//! collector exports, and a running collector's `/metrics` passes
//! `promtool check metrics`.

use std::process::{Command, Stdio};

use driftwatch_tests::*;

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool").args(args).current_dir(repo().join("deploy/prometheus")).output().expect("running promtool");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerting_rules_hold_and_a_collectors_metrics_lint_clean() {
    services_up();
    let (ok, out) = promtool(&["check", "rules", "driftwatch.rules.yml"]);
    assert!(ok && out.contains("SUCCESS: 9 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "driftwatch.rules.test.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");

    // A collector, running, with its API.
    let work = tempfile::tempdir().unwrap();
    let names = Names::new();
    let cfg = names.collector_config(work.path(), "http://127.0.0.1:9/hook");
    let port = listen_api(&cfg, "");
    create_topics(&cfg);
    let collector = spawn_collector(work.path(), "collector", &cfg);
    let metrics = wait_for("the collector's /metrics", 60, async || {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?;
        let text = r.text().await.ok()?;
        text.contains("driftwatch_leader").then_some(text)
    })
    .await;

    // promtool's lint: names, suffixes, help texts.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool check metrics");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics: {said}\n{metrics}");

    // Every driftwatch_ metric the rules read is exported (as a family:
    // its HELP line), so no rule watches a name that never comes.
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/driftwatch.rules.yml")).unwrap();
    let read: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("driftwatch_") && !w.starts_with("driftwatch_collector"))
        .collect();
    assert!(read.len() >= 8, "{read:?}");
    let exported = driftwatch_collector::metrics::family_names();
    for name in &read {
        assert!(exported.iter().any(|e| e == name), "the rules read {name}, which no collector exports (exported: {exported:?})");
    }
    drop(collector);
    names.drop_database().await;
}
