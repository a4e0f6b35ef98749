//! Alerting end to end, against local servers that hold to the Slack and
//! PagerDuty contracts: one notification per group, Slack's 429 with
//! Retry-After and a 5xx retried, PagerDuty trigger and resolve with one
//! dedup key, escalation to a signed webhook, no repeat after a restart,
//! a silence respected, and the resolve after the fix.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use hmac::{Hmac, Mac};
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;
use sha2::Sha256;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &str = "test-secret";

fn config(names: &Names, dir: &Path, slack: &str, pd: &str, escalation: &str) -> std::path::PathBuf {
    let packs = repo().join("tests/fixtures/packs/alerting");
    let cfg = names.collector_config_with_policies(dir, escalation, &packs);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let base = &text[..text.find("alerts:").unwrap()];
    let alerts = format!(
        r#"alerts:
  external_url: http://127.0.0.1:8080
  drift_min_severity: null
  silence_refresh_secs: 1
  receivers:
    - name: slack
      slack: {{url: "http://{slack}/"}}
      timeout_ms: 2000
    - name: pagerduty
      pagerduty: {{routing_key: "{KEY}", url: "http://{pd}/"}}
    - name: manager
      webhook: {{url: "{escalation}", secret: "{SECRET}"}}
  route:
    receiver: slack
    group_by: [asset]
    group_wait: 2s
    group_interval: 2s
    repeat_interval: 1h
    routes:
      - matchers: ['severity=~"critical|high"']
        receiver: pagerduty
        continue: true
        escalate: {{after: 6s, receiver: manager}}
      - receiver: slack
api:
  listen: null
"#
    );
    std::fs::write(&cfg, format!("{base}{alerts}")).unwrap();
    cfg
}

fn verify(headers: &std::collections::BTreeMap<String, String>, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (headers.get("x-driftwatch-timestamp"), headers.get("x-driftwatch-signature")) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    sig.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()).is_some_and(|want| mac.verify_slice(&want).is_ok())
}

fn slack_assets(msgs: &[Value]) -> Vec<String> {
    msgs.iter().map(|m| m["text"].as_str().unwrap_or_default().to_string()).collect()
}

/// Starts `driftwatch-collector run`, logging under `work/name`.
fn collector(work: &Path, cfg: &Path, name: &str) -> Proc {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Proc::spawn(name, Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(cfg), &dir)
}

/// The receivers (Slack, PagerDuty, the escalation webhook), and a
/// collector configuration routing to them with its topics created.
struct Setup {
    work: tempfile::TempDir,
    slack: ContractServer,
    pd: ContractServer,
    manager: Receiver,
    names: Names,
    cfg: std::path::PathBuf,
}

async fn setup() -> Setup {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (slack, slack_addr) = ContractServer::start(Contract::Slack).await;
    let (pd, pd_addr) = ContractServer::start(Contract::PagerDuty).await;
    let (manager, manager_addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = config(&names, work.path(), &slack_addr.to_string(), &pd_addr.to_string(), &format!("http://{manager_addr}/hook"));
    create_topics(&cfg);
    Setup { work, slack, pd, manager, names, cfg }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_retries_escalation_restart_silence_and_resolve() {
    let Setup { work, slack, pd, manager, names, cfg } = setup().await;
    let run = |name: &str| collector(work.path(), &cfg, name);
    let mut collector = run("collector-1");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let (web, db) = (unique("web"), unique("db"));

    // Slack throttles the first request, fails the second and stalls the
    // third past the client's 2 s timeout.
    slack.fail_next(&[(429, Some(1), 0), (503, None, 0), (200, None, 3)]);

    // 1. Two failing controls on one asset: one Slack message for the group
    //    (both alerts), one PagerDuty trigger for the high one.
    let bad = [("sshd.config.permitrootlogin", "yes"), ("sshd.config.x11forwarding", "yes")];
    produce(&producer, &names, &snapshot(&web, 1, SnapshotKind::Full, &bad)).await;
    let first = wait_for("the Slack notification", 60, async || slack.accepted().first().cloned()).await;
    let blocks = first["attachments"][0]["blocks"].as_array().unwrap().clone();
    let text: String = blocks.iter().map(|b| b.to_string()).collect();
    assert!(
        text.contains("SSH root login is disabled") && text.contains("X11 forwarding is disabled"),
        "one message for the group: {first:#}"
    );
    assert_eq!(first["attachments"][0]["color"], "#E8912D", "high severity colour");
    assert!(text.contains("soc2:CC6.1"), "requirement ids: {text}");
    let statuses: Vec<u16> = slack.seen().iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![429, 503, 200, 200], "429 with Retry-After, 503 and a timeout retried");
    assert_eq!(slack.accepted().len(), 1, "the timed-out attempt is not counted as delivered");
    let trigger = wait_for("the PagerDuty trigger", 30, async || pd.accepted().first().cloned()).await;
    assert_eq!((trigger["event_action"].as_str(), trigger["payload"]["severity"].as_str()), (Some("trigger"), Some("error")));
    let dedup = trigger["dedup_key"].as_str().unwrap().to_string();

    // 2. Still failing after 6 s: escalated once to the manager, signed.
    let esc = wait_for("the escalation", 30, async || manager.raw.lock().unwrap().first().cloned()).await;
    assert!(verify(&esc.0, &esc.1), "the escalation carries a valid HMAC signature: {:?}", esc.0);
    let body: Value = serde_json::from_slice(&esc.1).unwrap();
    assert_eq!((body["escalation"].as_bool(), body["status"].as_str()), (Some(true), Some("firing")));

    // 3. A restart repeats nothing.
    assert!(collector.terminate(30), "collector did not stop");
    let before = (slack.accepted().len(), pd.accepted().len(), manager.raw.lock().unwrap().len());
    collector = run("collector-2");
    wait_for("the restarted collector to consume", 60, async || collector.log().contains("partitions assigned").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        (slack.accepted().len(), pd.accepted().len(), manager.raw.lock().unwrap().len()),
        before,
        "nothing re-sent after the restart"
    );

    // 4. A silenced asset fails quietly.
    let out = Command::new(bin("driftwatch-collector"))
        .args(["silence", "add", "--matcher", &format!("asset={db}"), "--duration", "1h", "--author", "alice", "--comment", "db migration"])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list =
        Command::new(bin("driftwatch-collector")).args(["silence", "list", "--format", "json"]).arg("--config").arg(&cfg).output().unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["created_by"], "alice");
    tokio::time::sleep(Duration::from_secs(2)).await; // the collector re-reads silences every second
    produce(&producer, &names, &snapshot(&db, 1, SnapshotKind::Full, &bad)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(slack_assets(&slack.accepted()).iter().all(|t| !t.contains(&db)), "silenced: {:?}", slack_assets(&slack.accepted()));
    assert!(pd.accepted().iter().all(|e| e["payload"]["source"] != db.as_str()));

    // 5. The fix resolves everywhere: Slack, PagerDuty (same dedup key), the manager.
    let good = [("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "no")];
    produce(&producer, &names, &snapshot(&web, 2, SnapshotKind::Full, &good)).await;
    let resolve = wait_for("the PagerDuty resolve", 60, async || pd.accepted().into_iter().find(|e| e["event_action"] == "resolve")).await;
    assert_eq!(resolve["dedup_key"], dedup.as_str());
    wait_for("the Slack resolve", 30, async || {
        slack.accepted().into_iter().find(|m| m["text"].as_str().unwrap_or_default().starts_with("RESOLVED"))
    })
    .await;
    wait_for("the escalation resolve", 30, async || {
        manager.bodies.lock().unwrap().iter().find(|b| b["status"] == "resolved" && b["escalation"] == true).cloned()
    })
    .await;

    // Every payload held to the contracts; one trigger, one resolve.
    assert!(slack.invalid().is_empty(), "{:?}", slack.invalid());
    assert!(pd.invalid().is_empty(), "{:?}", pd.invalid());
    let actions: BTreeSet<String> = pd.accepted().iter().map(|e| e["event_action"].as_str().unwrap().to_string()).collect();
    assert_eq!(pd.accepted().len(), 2, "{:?}", pd.accepted());
    assert_eq!(actions, ["resolve".to_string(), "trigger".to_string()].into());
    drop(collector);
    names.drop_database().await;
}

/// A graceful stop while a notification is on its way: the collector
/// delivers and logs it before it exits, and its restart does not send it
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_delivers_what_is_on_its_way() {
    let Setup { work, slack, names, cfg, .. } = setup().await;
    let mut first = collector(work.path(), &cfg, "collector-1");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    // Slack holds the message for a second (within the 2 s timeout).
    slack.fail_next(&[(200, None, 1)]);
    let low = [("sshd.config.permitrootlogin", "no"), ("sshd.config.x11forwarding", "yes")];
    produce(&producer, &names, &snapshot(&unique("web"), 1, SnapshotKind::Full, &low)).await;
    wait_for("the Slack message on its way", 60, async || (!slack.seen().is_empty()).then_some(())).await;
    assert!(first.terminate(30), "collector did not stop");
    assert!(first.log().contains("notification delivered"), "delivered before the exit:\n{}", first.log());
    let second = collector(work.path(), &cfg, "collector-2");
    wait_for("the restarted collector to consume", 60, async || second.log().contains("partitions assigned").then_some(())).await;
    // The restore's second look (2 s) and group_wait (2 s) have passed.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(slack.seen().len(), 1, "sent again after the restart: {:?}", slack.seen());
    drop(second);
    names.drop_database().await;
}
