//! The email receiver against a local SMTP server (aiosmtpd, started
//! here on loopback): a violation's alert arrives as a message over
//! STARTTLS, authenticated, with its fix line; a transient refusal (451) is
//! retried; a server that does not offer STARTTLS gets nothing; a
//! scheduled report arrives by email (summary and attachment) and at a
//! webhook (the report as JSON).

use std::path::Path;
use std::process::{Command, Stdio};

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

/// An SMTP server of `tests/smtp/server.py` on a free port.
fn smtp(work: &Path, name: &str, args: &[&str]) -> (Proc, u16, std::path::PathBuf) {
    let port = free_port();
    let out = work.join(format!("{name}.jsonl"));
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/smtp/server.py")).args(["--port", &port.to_string(), "--out"]).arg(&out).args(args);
    let proc = Proc::spawn(name, cmd.stdout(Stdio::null()), work);
    (proc, port, out)
}

fn messages(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_arrive_by_email_over_starttls_and_never_in_the_clear() {
    services_up(); // installs aiosmtpd when missing
    let work = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert, key) = (work.path().join("smtp.pem"), work.path().join("smtp.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let tls_args = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--user",
        "driftwatch",
        "--password",
        "s3cret",
        "--fail-first",
        "1",
    ];
    let (_secure, port, inbox) = smtp(work.path(), "smtp-tls", &tls_args);
    let (_plain, plain_port, plain_inbox) = smtp(work.path(), "smtp-plain", &[]);
    for p in [port, plain_port] {
        wait_for("the SMTP servers", 30, async || std::net::TcpStream::connect(("127.0.0.1", p)).ok()).await;
    }

    let (hook, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/unused", &repo().join("tests/fixtures/packs/drift"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("alerts:\n").unwrap();
    let end = text.find("api:\n").unwrap();
    let alerts = format!(
        "alerts:\n  receivers:\n\
         \x20   - name: mail\n      max_attempts: 4\n      email: {{smarthost: \"127.0.0.1:{port}\", from: \"Driftwatch <driftwatch@example.test>\", to: [secops@example.test], ca_file: {}, username: driftwatch, password: s3cret}}\n\
         \x20   - name: plain\n      max_attempts: 2\n      email: {{smarthost: \"127.0.0.1:{plain_port}\", from: driftwatch@example.test, to: [ops@example.test], ca_file: {}}}\n\
         \x20   - name: hook\n      webhook: {{url: \"http://{addr}/hook\"}}\n\
         \x20 route:\n    receiver: mail\n    group_by: [\"...\"]\n    group_wait: 0s\n    group_interval: 1s\n    routes:\n\
         \x20     - {{receiver: mail, matchers: [\"alertname=violation\"], continue: true}}\n\
         \x20     - {{receiver: plain, matchers: [\"alertname=violation\"]}}\n\
         reports:\n  check_secs: 5\n  schedules:\n    - {{name: weekly-soc2, framework: soc2, every: 7d, receivers: [mail, hook], format: html}}\n",
        cert.display(),
        cert.display()
    );
    std::fs::write(&cfg, format!("{}{alerts}{}", &text[..start], &text[end..])).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let asset = unique("mail");
    produce(&producer, &names, &snapshot(&asset, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;

    // Refused once (451), retried, delivered over TLS with the login.
    let got = wait_for("the alert by email", 60, async || messages(&inbox).into_iter().next()).await;
    assert_eq!((got["tls"].as_bool(), got["login"].as_str()), (Some(true), Some("driftwatch")), "{got}");
    assert_eq!(got["to"][0], "secops@example.test");
    assert_eq!(got["subject"].as_str().unwrap(), format!("[FIRING:1] SSH root login is disabled on {asset}"), "{got}");
    let body = got["body"].as_str().unwrap();
    assert!(body.contains(&format!("asset={asset}")) && body.contains("Fix: Set `PermitRootLogin no`"), "{body}");
    // The server without STARTTLS: the receiver gives up, nothing in the clear.
    wait_for("the plaintext receiver to give up", 60, async || {
        let log = strip_ansi(&collector.log());
        log.lines().any(|l| l.contains("receiver=plain") && l.contains("notification delivery failed; giving up")).then_some(())
    })
    .await;
    assert!(messages(&plain_inbox).is_empty(), "a message went out without TLS");

    // The weekly report: once, by email with the report attached, and at
    // the webhook as JSON.
    let report = wait_for("the scheduled report by email", 60, async || {
        messages(&inbox).into_iter().find(|m| m["subject"].as_str().is_some_and(|s| s.starts_with("Driftwatch report: SOC 2")))
    })
    .await;
    assert!(report["body"].as_str().unwrap().starts_with("Coverage "), "{report}");
    assert!(report["body"].as_str().unwrap().contains("soc2:CC6.1 due "), "{report}");
    let attached = &report["attachments"][0];
    assert_eq!(attached["type"], "text/html", "{report}");
    assert!(attached["name"].as_str().unwrap().starts_with("soc2-") && attached["size"].as_u64().unwrap() > 1000, "{report}");
    let posted = wait_for("the scheduled report at the webhook", 30, async || hook.all().into_iter().find(|b| b["kind"] == "report")).await;
    assert_eq!((posted["schedule"].as_str(), posted["report"]["framework"].as_str()), (Some("weekly-soc2"), Some("soc2")), "{posted}");
    // Logged: not sent again within the week (the task looks every 5 s).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let reports = messages(&inbox).iter().filter(|m| m["subject"].as_str().is_some_and(|s| s.starts_with("Driftwatch report"))).count();
    assert_eq!(reports, 1);
    let rows = query(&format!(
        "SELECT receiver FROM {}.notification_log WHERE group_key = 'report:weekly-soc2' ORDER BY receiver",
        names.database
    ))
    .await;
    assert_eq!(rows.iter().map(|r| r["receiver"].as_str().unwrap()).collect::<Vec<_>>(), ["hook", "mail"]);
    drop(collector);
    names.drop_database().await;
}
