//! What a host sends, through what the collector does with it: a record
//! decoded and held to the limits, then a full snapshot and a delta built
//! from the input applied to an engine with the shipped packs. Results or
//! dead letters, never a panic or a stack overflow.
#![no_main]
use std::sync::{Arc, OnceLock};

use driftwatch_collector::eval::Engine;
use driftwatch_collector::policy::PolicySet;
use driftwatch_schemas::limits::Limits;
use driftwatch_schemas::*;
use libfuzzer_sys::fuzz_target;

fn policies() -> Arc<PolicySet> {
    static SET: OnceLock<Arc<PolicySet>> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        Arc::new(driftwatch_collector::policy::load_dir(&dir).expect("the shipped packs"))
    })
    .clone()
}

/// Facts from `text`: one `path=value` a line (`-path` removes it); values
/// that parse as JSON are typed.
fn facts(text: &str) -> (Vec<Fact>, Vec<String>) {
    let (mut facts, mut removed) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(p) = line.strip_prefix('-') {
            removed.push(p.to_string());
        } else if let Some((p, v)) = line.split_once('=') {
            let value = serde_json::from_str::<FactValue>(v).unwrap_or_else(|_| FactValue::Str(v.to_string()));
            facts.push(Fact { path: p.to_string(), value });
        }
    }
    (facts, removed)
}

fn snapshot(sequence: i64, kind: SnapshotKind, text: &str) -> ConfigSnapshot {
    let (facts, removed_paths) = facts(text);
    ConfigSnapshot {
        asset: Asset { id: "fuzz".into(), kind: AssetKind::Host, hostname: "fuzz".into(), labels: Default::default() },
        agent_id: "fuzz".into(),
        agent_version: "0".into(),
        snapshot_id: format!("fuzz-{sequence}"),
        sequence,
        collected_at: chrono::Utc::now(),
        kind,
        facts,
        removed_paths,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut engine = Engine::new(policies(), chrono::Duration::minutes(10));
    // The input as the body of a snapshot record.
    thread_local!(static DECODER: Decoder = Decoder::new().expect("the compiled-in schemas"));
    let fp = avro::fingerprint(&avro::current_schema(Stream::Snapshots).expect("schema"));
    let mut record = vec![0xC3, 0x01];
    record.extend_from_slice(&fp.to_le_bytes());
    record.extend_from_slice(data);
    if let Ok(Message::Snapshot(s)) = DECODER.with(|d| d.decode(Stream::Snapshots, &record)) {
        if limits.check(&Message::Snapshot(s.clone())).is_ok() {
            engine.apply(&s);
        }
    }
    // The input as facts: the first half a full snapshot, the rest a delta.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    for (seq, kind, part) in [(1, SnapshotKind::Full, &text[..cut]), (2, SnapshotKind::Delta, &text[cut..])] {
        let s = snapshot(seq, kind, part);
        if limits.check(&Message::Snapshot(s.clone())).is_ok() {
            engine.apply(&s);
        }
    }
});
