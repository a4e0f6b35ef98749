//! The `alertmanager` receiver against Debian's Prometheus Alertmanager
//! (installed by `deploy/local/services`), started here on loopback with a
//! webhook receiver of the test's: two assets failing one control arrive at
//! Alertmanager as two alerts with Driftwatch's labels, annotations and
//! links, are grouped by it into one notification, and are resolved (its
//! resolved notification) when both are fixed.

use std::path::Path;
use std::process::Command;

use driftwatch_schemas::SnapshotKind;
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

/// Alertmanager on `port`, grouping by control and sending to `hook`.
fn start_alertmanager(dir: &Path, port: u16, hook: &str) -> Proc {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, control]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let storage = dir.join("alertmanager-data");
    std::fs::create_dir_all(&storage).unwrap();
    Proc::spawn(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No cluster: nothing listens beyond the loopback API.
            .arg("--cluster.listen-address="),
        dir,
    )
}

/// Alertmanager's webhook notifications with `status`, as (group labels'
/// control, the alerts' assets).
fn notifications(hook: &Receiver, status: &str) -> Vec<(String, Vec<String>)> {
    hook.all()
        .iter()
        .filter(|n| n["status"] == status)
        .map(|n| {
            let mut assets: Vec<String> =
                n["alerts"].as_array().unwrap().iter().map(|a| a["labels"]["asset"].as_str().unwrap_or_default().to_string()).collect();
            assets.sort();
            (n["groupLabels"]["control"].as_str().unwrap_or_default().to_string(), assets)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_reach_alertmanager_grouped_and_resolve_there() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (hook, hook_addr) = Receiver::start().await;
    let am_port = free_port();
    let am = start_alertmanager(work.path(), am_port, &format!("http://{hook_addr}/hook"));
    let am_url = format!("http://127.0.0.1:{am_port}");
    wait_for("Alertmanager to be ready", 60, async || {
        reqwest::get(format!("{am_url}/-/ready")).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;

    let names = Names::new();
    let cfg = names.collector_config_with_policies(work.path(), "http://127.0.0.1:9/unused", &repo().join("tests/fixtures/packs/drift"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "    - name: test\n      webhook: {url: \"http://127.0.0.1:9/unused\"}\n",
        &format!("    - name: test\n      alertmanager: {{url: \"{am_url}\", hold: 10m}}\n"),
    );
    assert!(text.contains("alertmanager: {url:"), "{text}");
    // Alertmanager ends what is not posted again within `hold`: the route
    // repeats sooner (a longer repeat is refused at start: below).
    let refused = work.path().join("refused.yaml");
    std::fs::write(&refused, &text).unwrap();
    let out = Command::new(bin("driftwatch-collector")).args(["check-config", "--config"]).arg(&refused).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("set repeat_interval below hold"), "{stderr}");
    std::fs::write(&cfg, text.replace("    group_interval: 1s\n", "    group_interval: 1s\n    repeat_interval: 1m\n")).unwrap();
    create_topics(&cfg);
    let collector_dir = work.path().join("collector");
    std::fs::create_dir_all(&collector_dir).unwrap();
    let collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), &collector_dir);

    // 1. Two assets fail the same control: two alerts at Alertmanager,
    //    one notification from it for the control's group.
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    let assets = [unique("web"), unique("db")];
    for a in &assets {
        produce(&producer, &names, &snapshot(a, 1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes")])).await;
    }
    let mut want: Vec<String> = assets.to_vec();
    want.sort();
    let firing =
        wait_for("Alertmanager's grouped notification", 90, async || notifications(&hook, "firing").into_iter().find(|(_, a)| *a == want))
            .await;
    assert_eq!(firing.0, "t.root_login", "grouped by the control: {:?}\n{}", hook.all(), collector.log());
    let active: Vec<Value> = reqwest::get(format!("{am_url}/api/v2/alerts?active=true")).await.unwrap().json().await.unwrap();
    let ours: Vec<&Value> = active.iter().filter(|a| assets.iter().any(|x| a["labels"]["asset"] == x.as_str())).collect();
    assert_eq!(ours.len(), 2, "{active:?}");
    for a in &ours {
        assert_eq!(a["labels"]["control"], "t.root_login", "{a}");
        assert_eq!(a["labels"]["severity"], "high", "{a}");
        assert!(a["annotations"]["remediation"].as_str().is_some_and(|r| r.contains("PermitRootLogin no")), "{a}");
        let asset = a["labels"]["asset"].as_str().unwrap();
        assert!(a["generatorURL"].as_str().is_some_and(|u| u.ends_with(&format!("/assets/{asset}"))), "{a}");
        assert_eq!(a["status"]["state"], "active", "{a}");
    }

    // 2. Both fixed: the alerts end at Alertmanager, which sends the
    //    group's resolve.
    for a in &assets {
        produce(&producer, &names, &snapshot(a, 2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no")])).await;
    }
    wait_for("Alertmanager's resolved notification", 90, async || {
        notifications(&hook, "resolved").into_iter().find(|(c, a)| c == "t.root_login" && *a == want).map(|_| ())
    })
    .await;
    // What stays is the fix itself: drift, a point event, shown for `hold`.
    let active: Vec<Value> = reqwest::get(format!("{am_url}/api/v2/alerts?active=true")).await.unwrap().json().await.unwrap();
    let left: Vec<&Value> = active.iter().filter(|a| assets.iter().any(|x| a["labels"]["asset"] == x.as_str())).collect();
    assert_eq!(left.len(), 2, "{active:?}");
    assert!(left.iter().all(|a| a["labels"]["alertname"] == "drift" && a["labels"]["direction"] == "remediated"), "{left:?}");
    assert!(notifications(&hook, "firing").iter().all(|(c, _)| c == "t.root_login"), "{:?}", hook.all());
    drop(collector);
    drop(am);
    names.drop_database().await;
}
