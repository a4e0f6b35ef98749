//! The whole path with nothing mocked: a real agent reads a host tree and
//! an auth log and probes an HTTP endpoint, produces Avro to the real
//! broker; a real collector consumes, evaluates, writes ClickHouse and
//! posts to a webhook. A bad sshd_config opens a violation; fixing the file
//! (editor-style, by rename) resolves it.

use std::process::Command;

use driftwatch_tests::*;
use serde_json::Value;

const CONTROL: &str = "linux.sshd.root_login_disabled";

fn alert_for(bodies: &[Value], asset: &str, status: &str) -> Option<Value> {
    notified_alerts(bodies)
        .into_iter()
        .find(|b| b["alertname"] == "violation" && b["asset_id"] == asset && b["control_id"] == CONTROL && b["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violation_opens_on_bad_sshd_config_and_resolves_when_fixed() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    let asset = unique("asset");
    write_host_file(&host, "/etc/machine-id", &format!("{asset}\n"), 0o444);
    write_host_file(&host, "/etc/hostname", "e2e-host\n", 0o644);
    write_host_file(&host, "/etc/ssh/sshd_config", "# deliberately bad\nPermitRootLogin yes\nPermitEmptyPasswords no\n", 0o600);
    write_host_file(&host, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", 0o644);
    write_host_file(&host, "/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640);
    write_host_file(&host, "/var/log/auth.log", "", 0o640);

    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let collector_cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
    create_topics(&collector_cfg);
    let agent_cfg = work.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!(
            "root: {}\nstate_dir: {}\nasset:\n  labels: {{env: test}}\nkafka:\n  brokers: {BROKERS}\n  topics:\n{}snapshots:\n  debounce_ms: 200\naudit:\n  authlog: [/var/log/auth.log]\n  poll_ms: 200\n  from_start: true\nprobes:\n  - id: receiver\n    kind: http\n    url: http://{addr}/health\n    interval_secs: 1\n  - id: receiver-tcp\n    kind: tcp\n    target: \"{addr}\"\n    interval_secs: 1\nheartbeat_secs: 1\n",
            host.display(),
            work.path().join("state").display(),
            names.topics_yaml(false)
        ),
    )
    .unwrap();

    let mut collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&collector_cfg), work.path());
    let mut agent = Proc::spawn("agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&agent_cfg), work.path());

    // 1. The violation arrives at the webhook.
    let opened = wait_for("the violation alert", 90, async || alert_for(&receiver.all(), &asset, "firing")).await;
    assert_eq!(opened["severity"], "high");
    assert!(opened["annotations"]["evidence"].as_str().unwrap().contains(r#"sshd.config.permitrootlogin = "yes""#), "{opened}");
    // What to do about it, from the pack, and where to read more.
    assert_eq!(
        opened["annotations"]["remediation"],
        "Set `PermitRootLogin no` in /etc/ssh/sshd_config (before any Match block) and reload sshd."
    );
    assert!(opened["generator_url"].as_str().unwrap().ends_with(&format!("/controls/{CONTROL}")), "{opened}");
    let frameworks = opened["frameworks"].as_str().unwrap();
    assert!(frameworks.contains("soc2:CC6.1") && frameworks.contains("pci-dss:2.2.6"), "{frameworks}");
    let violation_id = opened["instance"].as_str().unwrap().to_string();

    // The agent's heartbeat, and the TCP probe's success, arrive on the SLA stream.
    let (db, a) = (names.database.clone(), asset.clone());
    wait_for("a heartbeat", 60, async || {
        let rows = try_query(&format!("SELECT count() AS n FROM {db}.sla_measurements WHERE asset_id = '{a}' AND (probe_id = 'heartbeat' OR (probe_id = 'receiver-tcp' AND success = 1)) HAVING uniqExact(probe_id) = 2"))
            .await
            .ok()?;
        (rows.first()?["n"] != "0" && rows[0]["n"] != 0).then_some(())
    })
    .await;

    // 2. Someone edits the file with sudo: the audit event is stored.
    let log = host.join("var/log/auth.log");
    let line = "Nov 22 19:30:00 e2e-host sudo:    alice : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/vi /etc/ssh/sshd_config\n";
    std::fs::write(&log, line).unwrap();

    // 3. The file is fixed the way editors save: write a new file, rename over.
    let cfg = host.join("etc/ssh/sshd_config");
    let tmp = host.join("etc/ssh/.sshd_config.swp");
    std::fs::write(&tmp, "PermitRootLogin no\nPermitEmptyPasswords no\n").unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();

    let resolved = wait_for("the resolve alert", 60, async || alert_for(&receiver.all(), &asset, "resolved")).await;
    assert_eq!(resolved["instance"], violation_id.as_str());
    assert!(resolved["annotations"]["evidence"].as_str().unwrap().contains(r#"sshd.config.permitrootlogin = "no""#), "{resolved}");
    assert!(collector.alive() && agent.alive(), "both processes keep running");
    let alerts = notified_alerts(&receiver.all());
    assert_eq!(
        alerts.iter().filter(|b| b["alertname"] == "violation" && b["asset_id"] == asset.as_str() && b["control_id"] == CONTROL).count(),
        2,
        "exactly one trigger and one resolve: {alerts:#?}"
    );
    // The fix is also a drift event (high severity: alerted once, no resolve).
    let drift: Vec<&Value> =
        alerts.iter().filter(|b| b["alertname"] == "drift" && b["asset_id"] == asset.as_str() && b["control_id"] == CONTROL).collect();
    assert_eq!(drift.len(), 1, "{alerts:#?}");
    assert!(drift[0]["annotations"]["diff"].as_str().unwrap().contains(r#"sshd.config.permitrootlogin: "yes" → "no""#), "{drift:?}");

    // 4. Everything is in ClickHouse.
    let db = &names.database;
    let a = asset.as_str();
    let facts = query(&format!(
        "SELECT snapshot_kind, value FROM {db}.facts WHERE asset_id = '{a}' AND path = 'sshd.config.permitrootlogin' ORDER BY sequence"
    ))
    .await;
    assert_eq!(
        facts.iter().map(|r| (r["snapshot_kind"].as_str().unwrap(), r["value"].as_str().unwrap())).collect::<Vec<_>>(),
        vec![("full", "\"yes\""), ("delta", "\"no\"")]
    );
    let snaps =
        query(&format!("SELECT kind, sequence, label_keys, label_values FROM {db}.snapshots WHERE asset_id = '{a}' ORDER BY sequence"))
            .await;
    assert_eq!(snaps[0]["kind"], "full");
    assert_eq!(snaps[0]["label_keys"][0], "env");
    assert!(snaps.iter().any(|s| s["kind"] == "delta"));
    let evals = query(&format!(
        "SELECT status FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = '{CONTROL}' ORDER BY evaluated_at, sequence"
    ))
    .await;
    assert_eq!(evals.first().unwrap()["status"], "fail");
    assert_eq!(evals.last().unwrap()["status"], "pass");
    let others = query(&format!(
        "SELECT control_id, status FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 'linux.sshd.empty_passwords_refused'"
    ))
    .await;
    assert!(others.iter().all(|r| r["status"] == "pass"), "{others:?}");
    let gshadow =
        query(&format!("SELECT status FROM {db}.evaluations WHERE asset_id = '{a}' AND control_id = 'linux.files.gshadow_protected'"))
            .await;
    assert!(gshadow.iter().all(|r| r["status"] == "not_applicable"), "missing file is not applicable: {gshadow:?}");
    // `at` is in seconds: an opening and its resolve may share one (the
    // opening first then).
    let viol =
        query(&format!("SELECT event FROM {db}.violations WHERE violation_id = '{violation_id}' ORDER BY at, event = 'resolved'")).await;
    assert_eq!(viol.iter().map(|r| r["event"].as_str().unwrap()).collect::<Vec<_>>(), vec!["opened", "resolved"]);

    let audit = wait_for("the sudo audit event", 30, async || {
        let rows =
            try_query(&format!("SELECT action, actor_user, object, outcome FROM {db}.audit_events WHERE asset_id = '{a}'")).await.ok()?;
        rows.into_iter().find(|r| r["action"] == "sudo")
    })
    .await;
    assert_eq!(audit["actor_user"], "alice");
    assert_eq!(audit["object"], "/usr/bin/vi /etc/ssh/sshd_config");
    assert_eq!(audit["outcome"], "success");

    let sla = wait_for("probe measurements", 30, async || {
        let rows = try_query(&format!(
            "SELECT success, status_code, latency_us FROM {db}.sla_measurements WHERE asset_id = '{a}' AND probe_id = 'receiver'"
        ))
        .await
        .ok()?;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(sla[0]["success"], 1);
    assert_eq!(sla[0]["status_code"], 200);
    assert!(sla[0]["latency_us"].as_str().map(|s| s.parse::<i64>().unwrap()).or(sla[0]["latency_us"].as_i64()).unwrap() > 0);

    // The agent signed everything with its own key, which the collector
    // pinned for the asset: the one `driftwatch-agent identity` prints.
    let out = Command::new(bin("driftwatch-agent")).arg("identity").arg("--config").arg(&agent_cfg).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&format!("asset: {asset}\n")), "{printed}");
    let key = printed.lines().find_map(|l| l.strip_prefix("key: ")).expect("a key line").to_string();
    let pinned = query(&format!(
        "SELECT fingerprint, argMax(status, version) AS status, argMax(decided_by, version) AS by FROM {db}.asset_keys WHERE asset_id = '{asset}' GROUP BY fingerprint"
    ))
    .await;
    assert_eq!(pinned, vec![serde_json::json!({"fingerprint": key, "status": "pinned", "by": "first use"})]);
    assert!(printed.contains(&format!("driftwatch-collector keys approve {asset} {key}")), "{printed}");
    let mode = std::fs::metadata(work.path().join("state/agent.key")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "the key is the agent's alone");

    drop(agent);
    drop(collector);
    names.drop_database().await;
}
