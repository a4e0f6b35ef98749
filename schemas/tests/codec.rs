//! Round trips, interoperability with the Avro library's own single-object
//! reader, dead-letter reasons, and schema evolution.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use chrono::{TimeZone, Utc};
use driftwatch_schemas::avro::{current_schema, fingerprint, AUDIT_EVENT_AVSC};
use driftwatch_schemas::canonical_form::legacy_fingerprint;
use driftwatch_schemas::*;

const V2: &str = include_str!("fixtures/config_snapshot_v2.avsc");

fn snapshot() -> ConfigSnapshot {
    ConfigSnapshot {
        asset: Asset {
            id: "a-1".into(),
            kind: AssetKind::K8sNode,
            hostname: "node-1".into(),
            labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        },
        agent_id: "agent-1".into(),
        agent_version: "0.1.0".into(),
        snapshot_id: "s-1".into(),
        sequence: 42,
        collected_at: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
        kind: SnapshotKind::Delta,
        facts: vec![
            Fact { path: "a.null".into(), value: FactValue::Null },
            Fact { path: "a.bool".into(), value: FactValue::Bool(true) },
            Fact { path: "a.int".into(), value: FactValue::Int(-7) },
            Fact { path: "a.float".into(), value: FactValue::Float(2.5) },
            Fact { path: "a.str".into(), value: FactValue::Str("no".into()) },
            Fact { path: "a.list".into(), value: FactValue::List(vec!["x".into(), "y".into()]) },
        ],
        removed_paths: vec!["a.gone".into()],
    }
}

fn audit() -> AuditEvent {
    AuditEvent {
        event_id: "e-1".into(),
        asset_id: "a-1".into(),
        hostname: "h".into(),
        source: AuditSource::K8sAudit,
        timestamp: Utc.timestamp_millis_opt(1_700_000_000_999).unwrap(),
        actor: Actor { user: Some("alice".into()), uid: Some(1000), auid: None, groups: vec!["wheel".into()] },
        action: "sudo".into(),
        object: Some("/bin/ls".into()),
        outcome: Outcome::Failure,
        source_address: None,
        raw: "raw line".into(),
        extra: BTreeMap::from([("tty".to_string(), "pts/0".to_string())]),
    }
}

fn sla() -> SlaMeasurement {
    SlaMeasurement {
        asset_id: "a-1".into(),
        probe_id: "web".into(),
        target: "http://127.0.0.1/".into(),
        kind: ProbeKind::Host,
        timestamp: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
        success: false,
        latency_us: 1234,
        status_code: Some(503),
        error: Some("status: 503".into()),
        host_metrics: Some(HostMetrics {
            cpu_percent: 12.5,
            memory_used_bytes: 1,
            memory_total_bytes: 2,
            disk_used_percent: 50.0,
            load1: 0.25,
        }),
        cert_days_left: Some(-3),
        agent_health: Some(AgentHealth {
            spool_depth: 7,
            spool_bytes: 4096,
            dropped: 1,
            last_sent: Some(Utc.timestamp_millis_opt(1_699_999_999_000).unwrap()),
        }),
    }
}

#[test]
fn measurements_of_agents_with_the_first_sla_schema_still_decode() {
    // An agent built before cert_days_left and agent_health existed.
    let v1 = apache_avro::Schema::parse_str(driftwatch_schemas::avro::HISTORY[0].1).unwrap();
    let mut m = sla();
    let fields = [
        ("asset_id", Value::String(m.asset_id.clone())),
        ("probe_id", Value::String(m.probe_id.clone())),
        ("target", Value::String(m.target.clone())),
        ("kind", Value::Enum(4, "host".into())),
        ("timestamp", Value::TimestampMillis(m.timestamp.timestamp_millis())),
        ("success", Value::Boolean(false)),
        ("latency_us", Value::Long(1234)),
        ("status_code", Value::Union(1, Box::new(Value::Int(503)))),
        ("error", Value::Union(1, Box::new(Value::String("status: 503".into())))),
        ("host_metrics", Value::Union(0, Box::new(Value::Null))),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let mut bytes = Vec::new();
    apache_avro::GenericSingleObjectWriter::new_with_capacity(&v1, 256)
        .unwrap()
        .write_value_ref(&Value::Record(fields.to_vec()), &mut bytes)
        .unwrap();
    // apache-avro's writer names the schema by its own canonical form: the
    // legacy fingerprint that agents of that time wrote.
    assert_eq!(bytes[2..10], legacy_fingerprint(&v1).to_le_bytes());
    let dec = Decoder::new().unwrap();
    assert!(dec.is_legacy(&bytes));
    let got = dec.decode(Stream::Sla, &bytes).unwrap();
    (m.host_metrics, m.cert_days_left, m.agent_health) = (None, None, None);
    assert_eq!(got, Message::Sla(m.clone()));
    // The same datum under the specification's fingerprint of v1.
    bytes[2..10].copy_from_slice(&fingerprint(&v1).to_le_bytes());
    assert!(!dec.is_legacy(&bytes));
    assert_eq!(dec.decode(Stream::Sla, &bytes).unwrap(), Message::Sla(m));
}

#[test]
fn records_written_with_the_legacy_fingerprints_still_decode() {
    // What agents wrote before the specification's fingerprints: the same
    // datum after apache-avro's own header.
    let mut enc = Encoder::new().unwrap();
    let dec = Decoder::new().unwrap();
    for m in [Message::Snapshot(snapshot()), Message::Audit(audit()), Message::Sla(sla())] {
        let mut bytes = enc.encode(&m).unwrap();
        assert!(!dec.is_legacy(&bytes));
        let schema = current_schema(m.stream()).unwrap();
        bytes[2..10].copy_from_slice(&legacy_fingerprint(&schema).to_le_bytes());
        assert!(dec.is_legacy(&bytes));
        assert_eq!(dec.decode(m.stream(), &bytes).unwrap(), m);
    }
    assert!(!dec.is_legacy(b"short"));
}

#[test]
fn every_stream_round_trips() {
    let mut enc = Encoder::new().unwrap();
    let dec = Decoder::new().unwrap();
    for m in [Message::Snapshot(snapshot()), Message::Audit(audit()), Message::Sla(sla())] {
        let bytes = enc.encode(&m).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        let fp = fingerprint(&current_schema(m.stream()).unwrap());
        assert_eq!(bytes[2..10], fp.to_le_bytes());
        assert_eq!(dec.decode(m.stream(), &bytes).unwrap(), m);
    }
}

/// The decoder hands on each fact path written the one way `FactPath`
/// writes it, so everything after it (the engine's facts, evidence, drift,
/// stored rows) finds `a["b"]` from some agent as `a.b`.
#[test]
fn fact_paths_are_decoded_the_one_way_they_are_written() {
    let mut s = snapshot();
    s.facts[0].path = r#"sshd["config"].permitrootlogin"#.into();
    s.facts[1].path = r#"files["/etc/shadow"]["mode"]"#.into();
    s.facts[2].path = "not a path".into();
    s.removed_paths = vec![r#"sshd.config["x11forwarding"]"#.into(), "a.gone".into()];
    let mut enc = Encoder::new().unwrap();
    let bytes = enc.encode(&Message::Snapshot(s)).unwrap();
    let Message::Snapshot(got) = Decoder::new().unwrap().decode(Stream::Snapshots, &bytes).unwrap() else { panic!("a snapshot") };
    let paths: Vec<&str> = got.facts.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths[..4], ["sshd.config.permitrootlogin", r#"files["/etc/shadow"].mode"#, "not a path", "a.float"]);
    assert_eq!(got.removed_paths, ["sshd.config.x11forwarding", "a.gone"]);
}

#[test]
fn the_avro_library_reads_what_we_write() {
    let mut enc = Encoder::new().unwrap();
    let bytes = enc.encode(&Message::Snapshot(snapshot())).unwrap();
    let schema = current_schema(Stream::Snapshots).unwrap();
    // The header names the schema by the specification's fingerprint
    // (apache-avro's own single-object reader expects its legacy one; an
    // independent implementation reads it: tests/avro_interop.rs).
    assert_eq!(bytes[2..10], 0x45e6_f312_5fc6_cfccu64.to_le_bytes());
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build().unwrap();
    let value = reader.read_value(&mut &bytes[10..]).unwrap();
    let Value::Record(fields) = value else { panic!("not a record") };
    assert_eq!(fields[4], ("sequence".to_string(), Value::Long(42)));
}

#[test]
fn bad_messages_give_precise_reasons() {
    let mut enc = Encoder::new().unwrap();
    let dec = Decoder::new().unwrap();
    let good = enc.encode(&Message::Audit(audit())).unwrap();

    assert!(matches!(dec.decode(Stream::Audit, &good[..5]), Err(CodecError::TooShort(5))));
    let mut bad_marker = good.clone();
    bad_marker[0] = b'{';
    assert!(matches!(dec.decode(Stream::Audit, &bad_marker), Err(CodecError::BadMarker(b'{', 0x01))));
    let mut unknown = good.clone();
    unknown[5] ^= 0xFF;
    assert!(matches!(dec.decode(Stream::Audit, &unknown), Err(CodecError::UnknownFingerprint(_))));
    assert!(matches!(dec.decode(Stream::Sla, &good), Err(CodecError::WrongStream { .. })));
    let truncated = &good[..good.len() - 3];
    assert!(matches!(dec.decode(Stream::Audit, truncated), Err(CodecError::Datum(_))));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(dec.decode(Stream::Audit, &trailing), Err(CodecError::TrailingBytes(1))));
    // Garbage after a valid header never panics.
    for n in 0..64u8 {
        let mut junk = good[..10].to_vec();
        junk.extend((0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)));
        let _ = dec.decode(Stream::Audit, &junk);
    }
}

#[test]
fn a_newer_reader_reads_data_of_the_older_writer() {
    // Version N (current) writes; a reader of version N+1 (a new field with a
    // default, top-level and nested) reads it and sees the defaults.
    let mut enc = Encoder::new().unwrap();
    let bytes = enc.encode(&Message::Snapshot(snapshot())).unwrap();
    let mut dec = Decoder::new().unwrap();
    dec.set_reader_schema(Stream::Snapshots, V2).unwrap();
    let value = dec.decode_value(Stream::Snapshots, &bytes).unwrap();
    let Value::Record(fields) = &value else { panic!("not a record") };
    let hint = fields.iter().find(|(k, _)| k == "collector_hint").unwrap();
    assert_eq!(hint.1, Value::String("none".into()));
    let Value::Record(asset) = &fields[0].1 else { panic!() };
    assert_eq!(asset.last().unwrap(), &("region".to_string(), Value::Union(0, Box::new(Value::Null))));
    // And the typed decode still yields the same snapshot.
    assert_eq!(dec.decode(Stream::Snapshots, &bytes).unwrap(), Message::Snapshot(snapshot()));
}

#[test]
fn an_older_reader_reads_data_of_a_newer_writer_it_was_told_about() {
    // An agent upgraded first writes with N+1; the collector still on N knows
    // that schema (registered writer schema) and resolves to N.
    let v2 = apache_avro::Schema::parse_str(V2).unwrap();
    let mut w = apache_avro::GenericSingleObjectWriter::new_with_capacity(&v2, 256).unwrap();
    let Value::Record(mut fields) = snapshot_value_via_current() else { panic!() };
    if let Value::Record(asset) = &mut fields[0].1 {
        asset.push(("region".into(), Value::Union(1, Box::new(Value::String("eu".into())))));
    }
    fields.push(("collector_hint".into(), Value::String("x".into())));
    let mut bytes = Vec::new();
    w.write_value(Value::Record(fields), &mut bytes).unwrap();

    let mut dec = Decoder::new().unwrap();
    assert!(matches!(dec.decode(Stream::Snapshots, &bytes), Err(CodecError::UnknownFingerprint(_))));
    dec.add_writer_schema(Stream::Snapshots, V2).unwrap();
    assert_eq!(dec.decode(Stream::Snapshots, &bytes).unwrap(), Message::Snapshot(snapshot()));
}

fn snapshot_value_via_current() -> Value {
    let mut enc = Encoder::new().unwrap();
    let bytes = enc.encode(&Message::Snapshot(snapshot())).unwrap();
    Decoder::new().unwrap().decode_value(Stream::Snapshots, &bytes).unwrap()
}

#[test]
fn json_form_is_plain() {
    let json = serde_json::to_value(snapshot()).unwrap();
    assert_eq!(json["facts"][2]["value"], serde_json::json!(-7));
    assert_eq!(json["facts"][5]["value"], serde_json::json!(["x", "y"]));
    assert_eq!(json["asset"]["kind"], "k8s-node");
    let back: ConfigSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(back, snapshot());
}

#[test]
fn confluent_framing_names_the_registry_id_and_carries_the_same_datum() {
    let mut enc = Encoder::new().unwrap();
    let single = enc.encode(&Message::Audit(audit())).unwrap();
    let framed = enc.encode_confluent(&Message::Audit(audit()), 7).unwrap();
    assert_eq!(framed[..5], [0, 0, 0, 0, 7], "magic byte 0, then the id big-endian");
    assert_eq!(framed[5..], single[10..], "the same Avro datum");
    assert_eq!(driftwatch_schemas::avro::confluent_schema_id(&framed), Some(7));
    assert_eq!(driftwatch_schemas::avro::confluent_schema_id(&single), None);

    let mut dec = Decoder::new().unwrap();
    assert!(matches!(dec.decode(Stream::Audit, &framed), Err(CodecError::UnknownSchemaId(7))));
    assert!(matches!(dec.decode(Stream::Audit, &framed[..3]), Err(CodecError::TooShort(3))));
    // The registry's copy of a schema is often reformatted; any text of the
    // same schema names it.
    let compact = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(AUDIT_EVENT_AVSC).unwrap()).unwrap();
    dec.add_registry_schema(7, Stream::Audit, &compact).unwrap();
    assert_eq!(dec.decode(Stream::Audit, &framed).unwrap(), Message::Audit(audit()));
    assert_eq!(dec.decode(Stream::Audit, &single).unwrap(), Message::Audit(audit()), "both framings, side by side");
    assert!(!dec.is_legacy(&framed));

    // An id whose schema is another stream's, or not a schema, is refused
    // by name; records naming it stay unknown.
    let e = dec.add_registry_schema(8, Stream::Snapshots, AUDIT_EVENT_AVSC).unwrap_err().to_string();
    assert!(
        e.starts_with("schema registry id 8: it is io.driftwatch.v1.AuditEvent, not a version of io.driftwatch.v1.ConfigSnapshot"),
        "{e}"
    );
    let e = dec.add_registry_schema(9, Stream::Audit, "{\"type\": \"nope\"}").unwrap_err().to_string();
    assert!(e.starts_with("schema registry id 9: not an Avro schema"), "{e}");
    let mut other = framed.clone();
    other[4] = 8;
    assert!(matches!(dec.decode(Stream::Audit, &other), Err(CodecError::UnknownSchemaId(8))));
}

/// A newer agent's enum symbol this collector does not know reads as the
/// enum's default, instead of dead-lettering the record.
#[test]
fn a_newer_writers_enum_symbol_reads_as_the_default() {
    let newer_text = AUDIT_EVENT_AVSC
        .replace(r#""symbols": ["success", "failure", "unknown"]"#, r#""symbols": ["success", "failure", "unknown", "partial"]"#);
    assert_ne!(newer_text, AUDIT_EVENT_AVSC);
    let newer = apache_avro::Schema::parse_str(&newer_text).unwrap();
    let Value::Record(mut fields) =
        Decoder::new().unwrap().decode_value(Stream::Audit, &Encoder::new().unwrap().encode(&Message::Audit(audit())).unwrap()).unwrap()
    else {
        panic!("not a record")
    };
    let outcome = fields.iter_mut().find(|(k, _)| k == "outcome").unwrap();
    outcome.1 = Value::Enum(3, "partial".into());
    let mut w = apache_avro::GenericSingleObjectWriter::new_with_capacity(&newer, 256).unwrap();
    let mut single = Vec::new();
    w.write_value(Value::Record(fields), &mut single).unwrap();
    let mut framed = vec![0, 0, 0, 0, 42];
    framed.extend_from_slice(&single[10..]);
    let mut dec = Decoder::new().unwrap();
    dec.add_registry_schema(42, Stream::Audit, &newer_text).unwrap();
    let Message::Audit(read) = dec.decode(Stream::Audit, &framed).unwrap() else { panic!() };
    assert_eq!(read.outcome, Outcome::Unknown);
    assert_eq!(read.action, "sudo");
}
