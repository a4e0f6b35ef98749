//! Avro on the wire exactly as the specification says, proven with an
//! independent implementation (fastavro, from PyPI, pinned by
//! `deploy/local/services`): for every stream and every schema version in
//! `schemas/avro/`, what fastavro writes from the `.avsc` files decodes in
//! the collector, and what the agent writes decodes in fastavro, every
//! field round-tripping (logical types, unions in each branch, maps,
//! arrays). fastavro knows nothing of Driftwatch but the schema files: it
//! routes messages by the specification's fingerprint, as an outside
//! consumer would. `tests/interop/fastavro_interop.py` is its side.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use driftwatch_collector::config::TopicsConfig;
use driftwatch_collector::ingest::decode::RecordDecoder;
use driftwatch_schemas::avro::{current_schema, fingerprint};
use driftwatch_schemas::canonical_form::{legacy_fingerprint, parsing_canonical_form};
use driftwatch_schemas::*;
use driftwatch_tests::*;
use serde_json::{json, Value};

const SNAPSHOT_AVSC: &str = "config_snapshot.avsc";
const AUDIT_AVSC: &str = "audit_event.avsc";
const SLA_AVSC: &str = "sla_measurement.avsc";
const SLA_V1_AVSC: &str = "history/sla_measurement.1.avsc";

/// Runs the fastavro side with `input` on its standard input; its output.
fn fastavro_run(verb: &str, input: &str) -> String {
    services_up(); // installs fastavro when missing
    let mut child = Command::new("python3")
        .arg(repo().join("tests/interop/fastavro_interop.py"))
        .arg(verb)
        .arg(repo().join("schemas/avro"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "fastavro {verb} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The same with JSON lines in and out.
fn fastavro(verb: &str, lines: &[Value]) -> Vec<Value> {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fastavro_run(verb, &input).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `ms` milliseconds from a base instant of this run: recent, since the
/// collector stores a record far from its receipt at its receipt.
fn at(ms: i64) -> DateTime<Utc> {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    Utc.timestamp_millis_opt(*BASE.get_or_init(|| Utc::now().timestamp_millis()) + ms).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Messages that between them set every field, take every branch of every
/// union and every symbol of the enums that matter, with empty and full
/// maps and arrays.
fn messages() -> Vec<Message> {
    let snapshot = |kind, asset_kind, facts: Vec<Fact>, removed: Vec<String>, labels| {
        Message::Snapshot(ConfigSnapshot {
            asset: Asset { id: "a-1".into(), kind: asset_kind, hostname: "node-1.example".into(), labels },
            agent_id: "agent-1".into(),
            agent_version: "0.1.0".into(),
            snapshot_id: "0193b5d2-0000-7000-8000-000000000001".into(),
            sequence: 9_007_199_254_740_993, // past a double's exact integers
            collected_at: at(-123),
            kind,
            facts,
            removed_paths: removed,
        })
    };
    let facts = vec![
        Fact { path: "a.null".into(), value: FactValue::Null },
        Fact { path: "a.bool".into(), value: FactValue::Bool(false) },
        Fact { path: "a.int".into(), value: FactValue::Int(i64::MIN) },
        Fact { path: "a.float".into(), value: FactValue::Float(-0.1) },
        Fact { path: "a.str".into(), value: FactValue::Str("ünïcødé \"quoted\"".into()) },
        Fact { path: "a.list".into(), value: FactValue::List(vec!["x".into(), String::new()]) },
        Fact { path: r#"files["/etc/shadow"].mode"#.into(), value: FactValue::Int(0o640) },
        Fact { path: "a.empty_list".into(), value: FactValue::List(vec![]) },
    ];
    let audit = |source, outcome, actor, object: Option<&str>, address: Option<&str>, extra| {
        Message::Audit(AuditEvent {
            event_id: "e-1".into(),
            asset_id: "a-1".into(),
            hostname: "h".into(),
            source,
            timestamp: at(-86_400_000), // a day old
            actor,
            action: "sudo".into(),
            object: object.map(Into::into),
            outcome,
            source_address: address.map(Into::into),
            raw: "type=USER_CMD msg=audit(1.2:3): cmd=6C73".into(),
            extra,
        })
    };
    let sla = |kind, status, error: Option<&str>, metrics, cert, health| {
        Message::Sla(SlaMeasurement {
            asset_id: "a-1".into(),
            probe_id: "web".into(),
            target: "https://127.0.0.1:8443/".into(),
            kind,
            timestamp: at(0),
            success: error.is_none(),
            latency_us: 1234,
            status_code: status,
            error: error.map(Into::into),
            host_metrics: metrics,
            cert_days_left: cert,
            agent_health: health,
        })
    };
    let metrics =
        HostMetrics { cpu_percent: 12.5, memory_used_bytes: 1 << 40, memory_total_bytes: 2 << 40, disk_used_percent: 99.9, load1: 0.0 };
    vec![
        snapshot(SnapshotKind::Full, AssetKind::Host, facts, vec![], labels(&[("env", "prod"), ("team", "платформа")])),
        snapshot(SnapshotKind::Delta, AssetKind::K8sNode, vec![], vec!["a.gone".into(), "b.gone".into()], labels(&[])),
        snapshot(SnapshotKind::Full, AssetKind::K8sCluster, vec![], vec![], labels(&[("k", "")])),
        audit(
            AuditSource::Auditd,
            Outcome::Success,
            Actor { user: Some("alice".into()), uid: Some(1000), auid: Some("alice".into()), groups: vec!["wheel".into(), "adm".into()] },
            Some("/bin/ls"),
            Some("127.0.0.1"),
            labels(&[("tty", "pts/0"), ("pid", "42")]),
        ),
        audit(
            AuditSource::K8sAudit,
            Outcome::Unknown,
            Actor { user: None, uid: None, auid: None, groups: vec![] },
            None,
            None,
            labels(&[]),
        ),
        audit(
            AuditSource::Authlog,
            Outcome::Failure,
            Actor { user: None, uid: Some(-1), auid: None, groups: vec![] },
            None,
            None,
            labels(&[]),
        ),
        audit(
            AuditSource::Journald,
            Outcome::Success,
            Actor { user: Some(String::new()), uid: None, auid: None, groups: vec![] },
            None,
            None,
            labels(&[]),
        ),
        sla(
            ProbeKind::Host,
            None,
            None,
            Some(metrics),
            None,
            Some(AgentHealth { spool_depth: 7, spool_bytes: 4096, dropped: 1, last_sent: Some(at(-1_000)) }),
        ),
        sla(
            ProbeKind::Http,
            Some(503),
            Some("status: 503"),
            None,
            Some(-3),
            Some(AgentHealth { spool_depth: 0, spool_bytes: 0, dropped: 0, last_sent: None }),
        ),
        sla(ProbeKind::Tls, None, None, None, Some(89), None),
        sla(ProbeKind::Tcp, None, Some("connection refused"), None, None, None),
        sla(ProbeKind::Dns, Some(0), None, None, None, None),
    ]
}

/// A message in fastavro's native shape (plain values for unions, enum
/// symbols as strings, timestamps as epoch milliseconds), mapped by hand
/// from the Rust types: independent of the codec under test.
fn native(m: &Message) -> Value {
    let opt = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| json!(s));
    match m {
        Message::Snapshot(s) => json!({
            "asset": {"id": s.asset.id, "kind": AssetKind::SYMBOLS[s.asset.kind as usize], "hostname": s.asset.hostname, "labels": s.asset.labels},
            "agent_id": s.agent_id, "agent_version": s.agent_version, "snapshot_id": s.snapshot_id,
            "sequence": s.sequence, "collected_at": s.collected_at.timestamp_millis(),
            "kind": if s.kind == SnapshotKind::Full { "full" } else { "delta" },
            "facts": s.facts.iter().map(|f| json!({"path": f.path, "value": match &f.value {
                FactValue::Null => Value::Null,
                FactValue::Bool(b) => json!(b),
                FactValue::Int(i) => json!(i),
                FactValue::Float(x) => json!(x),
                FactValue::Str(x) => json!(x),
                FactValue::List(l) => json!(l),
            }})).collect::<Vec<_>>(),
            "removed_paths": s.removed_paths,
        }),
        Message::Audit(a) => json!({
            "event_id": a.event_id, "asset_id": a.asset_id, "hostname": a.hostname, "source": AuditSource::SYMBOLS[a.source as usize],
            "timestamp": a.timestamp.timestamp_millis(),
            "actor": {"user": opt(&a.actor.user), "uid": a.actor.uid, "auid": opt(&a.actor.auid), "groups": a.actor.groups},
            "action": a.action, "object": opt(&a.object), "outcome": a.outcome.as_str(),
            "source_address": opt(&a.source_address), "raw": a.raw, "extra": a.extra,
        }),
        Message::Sla(x) => json!({
            "asset_id": x.asset_id, "probe_id": x.probe_id, "target": x.target, "kind": x.kind.as_str(),
            "timestamp": x.timestamp.timestamp_millis(), "success": x.success, "latency_us": x.latency_us,
            "status_code": x.status_code, "error": opt(&x.error),
            "host_metrics": x.host_metrics.as_ref().map(|h| json!({
                "cpu_percent": h.cpu_percent, "memory_used_bytes": h.memory_used_bytes,
                "memory_total_bytes": h.memory_total_bytes, "disk_used_percent": h.disk_used_percent, "load1": h.load1,
            })),
            "cert_days_left": x.cert_days_left,
            "agent_health": x.agent_health.as_ref().map(|h| json!({
                "spool_depth": h.spool_depth, "spool_bytes": h.spool_bytes, "dropped": h.dropped,
                "last_sent": h.last_sent.map(|t| t.timestamp_millis()),
            })),
        }),
    }
}

fn schema_file(stream: Stream) -> &'static str {
    match stream {
        Stream::Snapshots => SNAPSHOT_AVSC,
        Stream::Audit => AUDIT_AVSC,
        Stream::Sla => SLA_AVSC,
    }
}

fn topic(topics: &TopicsConfig, stream: Stream) -> &str {
    match stream {
        Stream::Snapshots => &topics.snapshots,
        Stream::Audit => &topics.audit,
        Stream::Sla => &topics.sla,
    }
}

/// The first SLA schema lacks `cert_days_left` and `agent_health`.
fn as_sla_v1(m: &Message) -> (Value, Message) {
    let Message::Sla(x) = m else { unreachable!("an SLA measurement") };
    let mut v = native(m);
    let o = v.as_object_mut().unwrap();
    o.remove("cert_days_left");
    o.remove("agent_health");
    let mut older = x.clone();
    (older.cert_days_left, older.agent_health) = (None, None);
    (v, Message::Sla(older))
}

fn hex_of(line: &Value) -> Vec<u8> {
    hex::decode(line["hex"].as_str().unwrap()).unwrap()
}

#[test]
fn canonical_forms_and_fingerprints_match_fastavro() {
    let theirs = fastavro_run("fingerprints", "");
    let readme = std::fs::read_to_string(repo().join("schemas/README.md")).unwrap();
    let mut seen = 0;
    for line in theirs.lines() {
        let mut parts = line.splitn(3, ' ');
        let (file, wire, pcf) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let text = std::fs::read_to_string(repo().join("schemas/avro").join(file)).unwrap();
        assert_eq!(parsing_canonical_form(&text).unwrap(), pcf, "{file}");
        let schema = apache_avro::Schema::parse_str(&text).unwrap();
        let fp = fingerprint(&schema);
        assert_eq!(hex::encode(fp.to_le_bytes()), wire, "{file}");
        // Published: the wire bytes, the number, and the legacy wire bytes.
        let legacy = hex::encode(legacy_fingerprint(&schema).to_le_bytes());
        for published in [wire.to_string(), format!("{fp:016x}"), legacy] {
            assert!(readme.contains(&published), "schemas/README.md does not publish {published} for {file}");
        }
        seen += 1;
    }
    assert_eq!(seen, 4, "every schema, current and history: {theirs}");
}

#[test]
fn fastavro_writes_what_the_collector_reads() {
    let topics = TopicsConfig::default();
    let collector = RecordDecoder::new(&topics, &Default::default()).unwrap();
    let decoder = Decoder::new().unwrap();
    // Every message under its stream's current schema, and every SLA
    // measurement also under the first SLA schema (an older writer).
    let mut cases: Vec<(&str, Value, Message)> = messages().iter().map(|m| (schema_file(m.stream()), native(m), m.clone())).collect();
    for m in messages().iter().filter(|m| m.stream() == Stream::Sla) {
        let (v, older) = as_sla_v1(m);
        cases.push((SLA_V1_AVSC, v, older));
    }
    let written = fastavro("write", &cases.iter().map(|(file, record, _)| json!({"schema": file, "record": record})).collect::<Vec<_>>());
    assert_eq!(written.len(), cases.len());
    for ((file, _, expected), line) in cases.iter().zip(&written) {
        let bytes = hex_of(line);
        assert_eq!(bytes[..2], [0xC3, 0x01]);
        let stream = expected.stream();
        let got = collector.decode(topic(&topics, stream), Some(&bytes)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(&got, expected, "{file}");
        assert!(!decoder.is_legacy(&bytes), "{file}: named by the specification's fingerprint");
    }
}

#[test]
fn fastavro_reads_what_the_agent_writes() {
    // The agent ships what this encoder writes (agent/src/ship/producer.rs).
    let mut encoder = Encoder::new().unwrap();
    let msgs = messages();
    let mut requests = Vec::new();
    for m in &msgs {
        let bytes = encoder.encode(m).unwrap();
        assert_eq!(bytes[2..10], fingerprint(&current_schema(m.stream()).unwrap()).to_le_bytes());
        requests.push(json!({"hex": hex::encode(&bytes), "reader": null}));
        if m.stream() == Stream::Sla {
            // A consumer still on the first SLA schema resolves to it.
            requests.push(json!({"hex": hex::encode(&bytes), "reader": SLA_V1_AVSC}));
        }
    }
    let read = fastavro("read", &requests);
    let mut read = read.iter();
    for m in &msgs {
        let line = read.next().unwrap();
        // fastavro found the writer schema by the fingerprint alone.
        assert_eq!(line["schema"], schema_file(m.stream()));
        assert_eq!(line["record"], native(m), "{:?}", m.stream());
        if m.stream() == Stream::Sla {
            let older = read.next().unwrap();
            assert_eq!(older["record"], as_sla_v1(m).0);
        }
    }
    assert!(read.next().is_none());
}

/// An outside producer on the real broker: a snapshot fastavro wrote, sent
/// as raw bytes, is evaluated and stored by a running collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_producer_writes_to_a_running_collector() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    services_up();
    let work = tempfile::tempdir().unwrap();
    let (_receiver, addr) = Receiver::start().await;
    let names = Names::new();
    let cfg = names.collector_config(work.path(), &format!("http://{addr}/hook"));
    create_topics(&cfg);
    let mut collector =
        Proc::spawn("collector", std::process::Command::new(bin("driftwatch-collector")).arg("run").arg("--config").arg(&cfg), work.path());
    let asset = unique("outside");
    let Message::Snapshot(mut s) = messages().remove(0) else { unreachable!() };
    s.asset.id = asset.clone();
    s.sequence = 1;
    s.collected_at = Utc::now();
    s.facts = vec![Fact { path: "sshd.config.permitrootlogin".into(), value: "no".into() }];
    let written = fastavro("write", &[json!({"schema": SNAPSHOT_AVSC, "record": native(&Message::Snapshot(s))})]);
    let bytes = hex_of(&written[0]);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", BROKERS).create().unwrap();
    // Signed as schemas/README.md describes (any Ed25519 library will do).
    let topic = names.topic("snapshots");
    let record = FutureRecord::to(&topic).key(asset.as_str()).payload(&bytes).headers(signed_as(&asset, &bytes));
    producer.send(record, Duration::from_secs(10)).await.unwrap();
    wait_status(&names.database, &asset, "linux.sshd.root_login_disabled", None, "pass", 60).await;
    assert!(collector.alive());
    assert!(!collector.log().contains("dead-lettered"), "{}", collector.log());
    names.drop_database().await;
}
