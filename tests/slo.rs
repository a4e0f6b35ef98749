//! SLOs from real probe results in ClickHouse: half the probes of a
//! service fail, so the fast-burn rule pages, the SLA is breached with the
//! credit due, and a probe of the SLO that never reports is a condition of
//! its own; `driftwatch-collector slo` shows the same numbers.

use std::process::Command;

use driftwatch_schemas::{Message, ProbeKind, SlaMeasurement};
use driftwatch_tests::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_rate_page_sla_breach_and_missing_probe() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
    let probe = unique("web");
    let silent_probe = unique("api");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        r#"slo:
  interval_secs: 1
  no_data_after_secs: 600
  silent_after_secs: 0
  objectives:
    - service: shop
      sli: {{kind: availability, probes: ["{probe}", "{silent_probe}"]}}
      objective: 99.9
      window: 30d
      sla: {{objective: 99.5, credits: [{{below: 99.5, credit: 10}}, {{below: 99.0, credit: 25}}]}}
      labels: {{team: shop}}
"#
    ));
    std::fs::write(&cfg, text).unwrap();
    create_topics(&cfg);
    let collector = Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();

    // 40 probe results over the last few minutes, every other one failing.
    let now = chrono::Utc::now();
    for i in 0..40i64 {
        let m = Message::Sla(SlaMeasurement {
            asset_id: "probe-host".into(),
            probe_id: probe.clone(),
            target: "https://shop.example/".into(),
            kind: ProbeKind::Http,
            timestamp: now - chrono::Duration::seconds(i * 5),
            success: i % 2 == 0,
            latency_us: 120_000,
            status_code: Some(if i % 2 == 0 { 200 } else { 503 }),
            error: (i % 2 == 1).then(|| "status: 503".into()),
            host_metrics: None,
            cert_days_left: None,
            agent_health: None,
        });
        produce(&producer, &names, &m).await;
    }

    let alerts = |name: &'static str| {
        let receiver = receiver.clone();
        async move || notified_alerts(&receiver.all()).into_iter().find(|a| a["alertname"] == name)
    };
    // Every window burns (all the data is recent): pages and tickets.
    let fast = wait_for("the fast-burn page", 90, async || {
        let bodies = receiver.all();
        bodies
            .iter()
            .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["labels"]["alertname"] == "slo_burn" && a["labels"]["window"] == "1h/5m")
    })
    .await;
    assert_eq!((fast["labels"]["severity"].as_str(), fast["labels"]["action"].as_str()), (Some("critical"), Some("page")));
    assert_eq!(fast["labels"]["team"], "shop");
    let breach = wait_for("the SLA breach", 30, alerts("sla_breach")).await;
    assert_eq!(breach["annotations"]["credit_due"], "25%", "{breach}");
    let none = wait_for("the probe without data", 30, async || {
        notified_alerts(&receiver.all())
            .into_iter()
            .find(|a| a["alertname"] == "probe_no_data" && a["annotations"]["summary"].as_str().unwrap_or_default().contains(&silent_probe))
    })
    .await;
    assert_eq!(none["status"], "firing");
    let tickets = wait_for("the slow-burn ticket", 30, async || {
        let bodies = receiver.all();
        bodies.iter().flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default()).find(|a| a["labels"]["window"] == "3d/6h")
    })
    .await;
    assert_eq!((tickets["labels"]["severity"].as_str(), tickets["labels"]["action"].as_str()), (Some("medium"), Some("ticket")));

    let out = Command::new(bin("driftwatch-collector")).args(["slo", "--format", "json", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((st[0]["sli"].as_f64().unwrap() - 50.0).abs() < 0.01, "{st:#}");
    assert_eq!((st[0]["sla_breached"].as_bool(), st[0]["credit_due"].as_f64()), (Some(true), Some(25.0)));
    assert!(st[0]["budget_remaining"].as_f64().unwrap() < 0.0);
    assert_eq!(st[0]["probes_total"], 40, "duplicates folded, every result counted once");
    drop(collector);
    names.drop_database().await;
}
