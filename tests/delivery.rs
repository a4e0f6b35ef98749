//! Durable delivery: the broker is killed while a real agent keeps
//! collecting; the agent is restarted during the outage; the broker comes
//! back. Every audit event arrives exactly once (by its line number) and in
//! the order it was written, through the agent's on-disk spool.
//!
//! A collector consumes through it all: ClickHouse ends with every event
//! exactly once.
//!
//! The test runs its own broker (the development broker, on a port of its
//! own, with its data in a file so that a restart keeps it), because it
//! kills it; the agent, the collector and the consumer only speak the
//! Kafka protocol.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_schemas::{Decoder, Message, Stream};
use driftwatch_tests::{bin, services_up, unique, wait_for, Proc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message as _};

/// A broker of the test's own, started with the same command as
/// `deploy/local/services` uses.
fn start_broker(dir: &Path, port: u16, n: usize) -> Proc {
    let tansu = which_tansu();
    let mut cmd = Command::new(tansu);
    cmd.current_dir(dir).args([
        "broker",
        "--listener-url",
        &format!("tcp://127.0.0.1:{port}"),
        "--advertised-listener-url",
        &format!("tcp://127.0.0.1:{port}"),
        "--storage-engine",
        "sqlite://broker.db",
    ]);
    Proc::spawn(&format!("broker-{n}"), &mut cmd, dir)
}

fn which_tansu() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("tansu"))
        .chain([Path::new(&home).join(".cargo/bin/tansu")])
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file()).expect("tansu is installed by deploy/local/services")
}

fn append(log: &Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    for i in from..to {
        writeln!(f, "Nov 29 10:00:00 node sshd[4242]: Failed password for invalid user probe{i:05} from 127.0.0.1 port 4{i:04} ssh2")
            .unwrap();
    }
}

/// Line numbers of the audit events on the topic, in partition order.
fn consume(brokers: &str, topic: &str, want: usize) -> Vec<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("delivery"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let decoder = Decoder::new().unwrap();
    let re = regex::Regex::new(r"user probe(\d{5}) ").unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < want && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) else { continue };
        let Ok(Message::Audit(e)) = decoder.decode(Stream::Audit, m.payload().unwrap_or_default()) else { continue };
        if let Some(c) = re.captures(&e.raw) {
            seen.push(c[1].parse().unwrap());
        }
    }
    // Anything more (a duplicate) would arrive within a few more polls.
    for _ in 0..6 {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            if let Ok(Message::Audit(e)) = decoder.decode(Stream::Audit, m.payload().unwrap_or_default()) {
                if let Some(c) = re.captures(&e.raw) {
                    seen.push(c[1].parse().unwrap());
                }
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_or_duplicated_when_the_broker_and_the_agent_restart() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let broker_dir = work.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let port = driftwatch_tests::free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut broker = start_broker(&broker_dir, port, 1);

    let names = driftwatch_tests::Names::new();
    let topics: Vec<String> = ["snapshots", "audit", "sla", "dead-letter"].iter().map(|s| names.topic(s)).collect();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))).collect();
    wait_for("the test broker to create topics", 60, async || {
        let r = admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)))).await.ok()?;
        r.iter().all(|t| t.is_ok() || matches!(t, Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)))).then_some(())
    })
    .await;

    let host = work.path().join("host");
    let log = host.join("var/log/auth.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "").unwrap();
    let cfg = work.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "root: {}\nstate_dir: {}\nasset: {{id: spool-host}}\nkafka:\n  brokers: \"{brokers}\"\n  topics: {{snapshots: {}, audit: {}, sla: {}}}\n  properties: {{reconnect.backoff.max.ms: \"500\"}}\nsnapshots: {{watch: false}}\naudit:\n  authlog: [/var/log/auth.log]\n  auditd: []\n  k8s_audit: []\n  journald: {{enabled: false}}\n  poll_ms: 100\n  from_start: true\nfacts: {{scan: {{paths: []}}}}\nheartbeat_secs: 0\n",
            host.display(),
            work.path().join("state").display(),
            topics[0],
            topics[1],
            topics[2],
        ),
    )
    .unwrap();
    // The collector, on the test's broker.
    let collector_cfg = names.collector_config(work.path(), "http://127.0.0.1:9/unused");
    let text = std::fs::read_to_string(&collector_cfg)
        .unwrap()
        .replace(&format!("brokers: {}", driftwatch_tests::BROKERS), &format!("brokers: \"{brokers}\""));
    std::fs::write(&collector_cfg, text).unwrap();
    let collector =
        Proc::spawn("collector", Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&collector_cfg), work.path());
    let run_agent = |n: usize| {
        Proc::spawn(&format!("agent-{n}"), Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&cfg), work.path())
    };

    // 1. Broker up: the first lines go straight through.
    let mut agent = run_agent(1);
    append(&log, 0, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;

    // 2. The broker dies; the agent keeps reading and spools.
    broker.kill();
    append(&log, 200, 400);
    let spool = work.path().join("state/spool");
    wait_for("undelivered messages in the spool", 30, async || (undelivered_bytes(&spool) > 0).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. The agent restarts during the outage; what it spooled stays spooled.
    assert!(agent.terminate(30), "the agent stops within its drain time");
    let log_text = agent.log();
    drop(agent);
    assert!(!log_text.contains("panicked"), "{log_text}");
    let mut agent = run_agent(2);
    append(&log, 400, 500);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(agent.log().contains("sending what an earlier run left in the spool"), "{}", agent.log());

    // 4. The broker comes back with its data; the spool drains, in order.
    let _broker = start_broker(&broker_dir, port, 2);
    append(&log, 500, 600);
    let seen = consume(&brokers, &topics[1], 600);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for n in &seen {
        *counts.entry(*n).or_default() += 1;
    }
    let missing: Vec<usize> = (0..600).filter(|n| !counts.contains_key(n)).collect();
    let doubled: Vec<(&usize, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "{} lost, e.g. {:?}\n{}", missing.len(), &missing[..missing.len().min(10)], agent.log());
    assert!(doubled.is_empty(), "duplicated: {doubled:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in the order written: {seen:?}");
    assert!(agent.alive());
    wait_for("the spool to be delivered", 30, async || (undelivered_bytes(&spool) == 0).then_some(())).await;

    // ClickHouse holds each event once (ids are deterministic; a redelivered
    // copy folds).
    let db = names.database.clone();
    wait_for("every event stored once", 90, async || {
        let rows = driftwatch_tests::try_query(&format!(
            "SELECT count() AS n, uniqExact(event_id) AS ids FROM {db}.audit_events FINAL WHERE asset_id = 'spool-host' AND action != 'events_dropped'"
        ))
        .await
        .ok()?;
        let r = rows.first()?;
        (driftwatch_tests::count(&r["n"]) == 600 && driftwatch_tests::count(&r["ids"]) == 600).then_some(())
    })
    .await;
    assert!(collector.log().contains("partitions assigned"), "{}", collector.log());
    names.drop_database().await;
}

/// The spool's segments: (number, bytes).
fn segments(spool: &Path) -> Vec<(u64, u64)> {
    let Ok(dir) = std::fs::read_dir(spool) else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok()?;
            Some((n, e.metadata().ok()?.len()))
        })
        .collect()
}

/// Bytes after the acknowledged position (written every second).
fn undelivered_bytes(spool: &Path) -> u64 {
    let acked = std::fs::read_to_string(spool.join("acked")).unwrap_or_default();
    let acked: Vec<u64> = acked.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    let (seg, off) = (acked.first().copied().unwrap_or(0), acked.get(1).copied().unwrap_or(0));
    segments(spool)
        .into_iter()
        .map(|(n, len)| match n.cmp(&seg) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => len.saturating_sub(off),
            std::cmp::Ordering::Greater => len,
        })
        .sum()
}

/// A state directory left corrupt (a crash, a full disk, an operator's
/// edit): the agent says what it could not read, starts over where it
/// must, and ships; it does not crash-loop.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_state_directory_is_reported_and_recovered_from() {
    services_up();
    let work = tempfile::tempdir().unwrap();
    let names = driftwatch_tests::Names::new();
    driftwatch_tests::create_topics(&names.collector_config(work.path(), "http://127.0.0.1:9/unused"));
    let host = work.path().join("host");
    let log = host.join("var/log/auth.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    append(&log, 0, 3);
    let state = work.path().join("state");
    std::fs::create_dir_all(state.join("spool")).unwrap();
    std::fs::write(state.join("agent-id"), "").unwrap();
    std::fs::write(state.join("sequence"), "not a number").unwrap();
    std::fs::write(state.join("tail-var_log_auth.log.json"), "{\"inode\": ").unwrap();
    std::fs::write(state.join("spool/acked"), "x y").unwrap();
    std::fs::write(state.join("spool/00000000000000000001.seg"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let cfg = work.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "root: {}\nstate_dir: {}\nasset: {{id: corrupt-state}}\nkafka:\n  brokers: {}\n  topics:\n{}snapshots: {{watch: false}}\naudit:\n  authlog: [/var/log/auth.log]\n  auditd: []\n  k8s_audit: []\n  journald: {{enabled: false}}\n  poll_ms: 100\n  from_start: true\nfacts: {{scan: {{paths: []}}}}\nheartbeat_secs: 0\n",
            host.display(),
            state.display(),
            driftwatch_tests::BROKERS,
            names.topics_yaml(false),
        ),
    )
    .unwrap();
    let mut agent = Proc::spawn("agent", Command::new(bin("driftwatch-agent")).arg("run").arg("--config").arg(&cfg), work.path());
    let seen = consume(driftwatch_tests::BROKERS, &names.topic("audit"), 3);
    assert_eq!(seen, vec![0, 1, 2], "the log is read from its start again, each line once\n{}", agent.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.alive(), "{}", agent.log());
    let text = agent.log();
    assert!(text.contains("spool position unreadable") && text.contains("corrupt or truncated"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    let id = std::fs::read_to_string(state.join("agent-id")).unwrap();
    assert!(!id.trim().is_empty(), "a new agent id");
}
