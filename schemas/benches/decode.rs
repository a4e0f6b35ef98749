//! Decoding cost, printed as figures (not a timed test): messages of each
//! stream decoded to Avro values by [`Decoder`] (readers built once per
//! writer schema, no resolution when the writer schema is the reader's)
//! against, in the same run, the way it decoded before: a reader built and
//! the value resolved to the reader schema for every message; and the
//! whole decode into the typed message.
//!
//! Run: `cargo bench -p driftwatch-schemas --bench decode`

use std::collections::BTreeMap;
use std::time::Instant;

use apache_avro::reader::datum::GenericDatumReader;
use chrono::{TimeZone, Utc};
use driftwatch_schemas::avro::current_schema;
use driftwatch_schemas::*;

/// A time as the wire carries it (milliseconds).
fn at() -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(1_764_000_000_123).single().expect("a valid time")
}

/// A host's full snapshot: 60 facts of the kinds agents send.
fn snapshot() -> Message {
    let mut facts = Vec::new();
    for i in 0..20 {
        facts.push(Fact { path: format!("sshd.config.option{i}"), value: FactValue::Str(format!("value-{i}")) });
        facts.push(Fact { path: format!("sysctl.net.ipv4.k{i}"), value: FactValue::Int(i) });
        facts.push(Fact { path: format!("files./etc/f{i}.mode"), value: FactValue::List(vec!["0644".into(), "root".into()]) });
    }
    Message::Snapshot(ConfigSnapshot {
        asset: Asset {
            id: "host-0042".into(),
            kind: AssetKind::Host,
            hostname: "web-42".into(),
            labels: BTreeMap::from([("env".into(), "prod".into()), ("team".into(), "web".into())]),
        },
        agent_id: "agent-42".into(),
        agent_version: "0.1.0".into(),
        snapshot_id: "host-0042-1".into(),
        sequence: 1,
        collected_at: at(),
        kind: SnapshotKind::Full,
        facts,
        removed_paths: vec![],
    })
}

/// An SSH login, as the auth-log parser emits it.
fn audit() -> Message {
    Message::Audit(AuditEvent {
        event_id: "auth:/var/log/auth.log:1234:5678".into(),
        asset_id: "host-0042".into(),
        hostname: "web-42".into(),
        source: AuditSource::Authlog,
        timestamp: at(),
        actor: Actor { user: Some("alice".into()), uid: Some(1000), auid: None, groups: vec![] },
        action: "ssh_login".into(),
        object: Some("sshd".into()),
        outcome: Outcome::Failure,
        source_address: Some("10.0.0.7".into()),
        raw: "Failed password for alice from 10.0.0.7 port 52144 ssh2".into(),
        extra: BTreeMap::from([("method".into(), "password".into())]),
    })
}

/// An HTTP probe result.
fn sla() -> Message {
    Message::Sla(SlaMeasurement {
        asset_id: "host-0042".into(),
        probe_id: "web".into(),
        target: "https://127.0.0.1/health".into(),
        kind: ProbeKind::Http,
        timestamp: at(),
        success: true,
        latency_us: 1834,
        status_code: Some(200),
        error: None,
        host_metrics: None,
        cert_days_left: Some(60),
        agent_health: None,
    })
}

/// Messages per second of `decode` over `n` decodes of `bytes`.
fn rate(n: usize, bytes: &[u8], mut decode: impl FnMut(&[u8])) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        decode(bytes);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut enc = Encoder::new().expect("encoder");
    let dec = Decoder::new().expect("decoder");
    println!("messages/s, one core      Avro value: Decoder   per-message resolve   ratio   typed message: Decoder");
    for (name, msg, n) in
        [("full snapshot, 60 facts", snapshot(), 20_000), ("audit event", audit(), 200_000), ("probe result", sla(), 200_000)]
    {
        let bytes = enc.encode(&msg).expect("encode");
        let stream = msg.stream();
        let schema = current_schema(stream).expect("schema");
        // Check both read the same before timing them.
        assert_eq!(dec.decode(stream, &bytes).expect("decode"), msg);
        let fast = rate(n, &bytes, |b| {
            std::hint::black_box(dec.decode_value(stream, b).expect("decode"));
        });
        let typed = rate(n, &bytes, |b| {
            std::hint::black_box(dec.decode(stream, b).expect("decode"));
        });
        let baseline = rate(n, &bytes, |b| {
            let reader = GenericDatumReader::builder(&schema).reader_schema(&schema).build().expect("reader");
            std::hint::black_box(reader.read_value(&mut &b[10..]).expect("datum"));
        });
        println!("{name:<25} {fast:>19.0} {baseline:>21.0} {:>6.1}x {typed:>24.0}", fast / baseline);
    }
}
