//! Detections: controls over the audit and SLA streams. A detection counts
//! the records its `match` accepts in a sliding window, per group key, and
//! fails while some group holds `threshold` of them ("5 failed SSH logins
//! for one user in 5 minutes"); it passes again once the window, measured
//! by the wall clock at [`Detector::expire`], holds fewer.
//!
//! Memory is bounded: a group keeps at most `threshold` timestamps (the
//! oldest of the last `threshold` decides), and groups with nothing left in
//! their window are dropped at every expiry pass.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use driftwatch_schemas::{AuditEvent, FactValue, SlaMeasurement};
use serde::Serialize;

use super::facts::CelFacts;
use crate::policy::{CompiledControl, DetectStream, PolicySet};

/// `event` as detections see it: absent optional fields are absent (so
/// `has(event.object)` works), not null.
#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    source: &'a str,
    timestamp: String,
    hostname: &'a str,
    action: &'a str,
    outcome: &'a str,
    actor: ActorView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_address: Option<&'a str>,
    extra: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ActorView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auid: Option<&'a str>,
    groups: &'a [String],
}

/// `probe` as detections see it.
#[derive(Serialize)]
struct ProbeView<'a> {
    id: &'a str,
    target: &'a str,
    kind: &'a str,
    timestamp: String,
    success: bool,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_used_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_used_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load1: Option<f64>,
}

/// One record of a stream, ready for detections.
pub struct Record {
    pub stream: DetectStream,
    pub id: String,
    pub asset_id: String,
    pub at: DateTime<Utc>,
    pub value: cel::Value,
}

impl Record {
    pub fn audit(e: &AuditEvent) -> Record {
        let view = EventView {
            id: &e.event_id,
            source: e.source.as_str(),
            timestamp: e.timestamp.to_rfc3339(),
            hostname: &e.hostname,
            action: &e.action,
            outcome: e.outcome.as_str(),
            actor: ActorView { user: e.actor.user.as_deref(), uid: e.actor.uid, auid: e.actor.auid.as_deref(), groups: &e.actor.groups },
            object: e.object.as_deref(),
            source_address: e.source_address.as_deref(),
            extra: &e.extra,
        };
        Record { stream: DetectStream::Audit, id: e.event_id.clone(), asset_id: e.asset_id.clone(), at: e.timestamp, value: to_cel(&view) }
    }

    pub fn sla(m: &SlaMeasurement) -> Record {
        let h = m.host_metrics.as_ref();
        let view = ProbeView {
            id: &m.probe_id,
            target: &m.target,
            kind: m.kind.as_str(),
            timestamp: m.timestamp.to_rfc3339(),
            success: m.success,
            latency_ms: m.latency_us as f64 / 1000.0,
            status_code: m.status_code,
            error: m.error.as_deref(),
            cpu_percent: h.map(|h| h.cpu_percent),
            memory_used_percent: h
                .filter(|h| h.memory_total_bytes > 0)
                .map(|h| h.memory_used_bytes as f64 * 100.0 / h.memory_total_bytes as f64),
            disk_used_percent: h.map(|h| h.disk_used_percent),
            load1: h.map(|h| h.load1),
        };
        // Probe results have no id of their own; this one is stable under
        // redelivery.
        let id = format!("{}/{}/{}", m.asset_id, m.probe_id, m.timestamp.timestamp_micros());
        Record { stream: DetectStream::Sla, id, asset_id: m.asset_id.clone(), at: m.timestamp, value: to_cel(&view) }
    }
}

fn to_cel<T: Serialize>(v: &T) -> cel::Value {
    // Views hold only strings, numbers, booleans, lists and string maps,
    // all of which CEL represents.
    cel::to_value(v).unwrap_or(cel::Value::Null)
}

/// A detection that started or stopped failing on an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Index into the policy set.
    pub control: usize,
    pub asset_id: String,
    /// `true`: now failing (or another group started failing); `false`:
    /// the window no longer holds enough records.
    pub firing: bool,
    /// The record that made it fire (the last one counted), if firing.
    pub record_id: Option<String>,
    pub evidence: BTreeMap<String, FactValue>,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
struct Windows {
    /// Group key → (timestamp, record id) of its latest matches, oldest first.
    groups: HashMap<String, VecDeque<(DateTime<Utc>, String)>>,
    /// Groups currently at or over the threshold.
    firing: Vec<String>,
}

/// Sliding windows of every (asset, detection).
#[derive(Default)]
pub struct Detector {
    windows: HashMap<(String, usize), Windows>,
}

impl Detector {
    /// Counts `record` in every detection of its stream that matches it;
    /// `applies` says whether a control applies to the record's asset, and
    /// `facts` (the asset's, when known) are visible to `match` and
    /// `group_by` beside the record (e.g. `accounts.group["sudo"].members`).
    pub fn observe(
        &mut self,
        policies: &PolicySet,
        record: &Record,
        facts: Option<&CelFacts>,
        applies: impl Fn(&CompiledControl) -> bool,
    ) -> Vec<Change> {
        let root = crate::policy::cel::root_context();
        let mut asset = root.new_inner_scope();
        if let Some(f) = facts {
            asset.set_variable_resolver(f);
        }
        // The record in the innermost scope: it shadows a fact root of
        // the same name.
        let mut ctx = asset.new_inner_scope();
        ctx.add_variable_from_value(record.stream.variable(), record.value.clone());
        let mut out = Vec::new();
        for (i, c) in policies.controls.iter().enumerate() {
            let Some(d) = c.detect.as_ref().filter(|d| d.stream == record.stream) else { continue };
            if !applies(c) {
                continue;
            }
            match c.program.execute(&ctx) {
                Ok(cel::Value::Bool(true)) => {}
                Ok(cel::Value::Bool(false)) => continue,
                // A record (or asset) without the fields a match reads
                // doesn't match.
                Err(e) if crate::policy::cel::is_missing_fact(&e, d.roots.iter().map(String::as_str)) => continue,
                Ok(other) => {
                    tracing::warn!(control = %c.control.id, record = %record.id, "detect.match returned {other:?}, not a boolean");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(control = %c.control.id, record = %record.id, error = %e, "detect.match failed");
                    continue;
                }
            }
            let key = group_key(c, &ctx);
            let w = self.windows.entry((record.asset_id.clone(), i)).or_default();
            let times = w.groups.entry(key.clone()).or_default();
            if times.iter().any(|(_, id)| *id == record.id) {
                continue; // a redelivered record counts once
            }
            let pos = times.partition_point(|(t, _)| *t <= record.at);
            times.insert(pos, (record.at, record.id.clone()));
            while times.len() > d.threshold as usize {
                times.pop_front();
            }
            let newest = times.back().map(|x| x.0).unwrap_or(record.at);
            let full = times.len() == d.threshold as usize && newest - times[0].0 <= d.window;
            if full && !w.firing.contains(&key) {
                w.firing.push(key.clone());
                out.push(Change {
                    control: i,
                    asset_id: record.asset_id.clone(),
                    firing: true,
                    record_id: Some(record.id.clone()),
                    evidence: evidence(&key, times, d.window),
                    message: format!(
                        "{} matching {} record(s) within {}{}",
                        times.len(),
                        stream_name(d.stream),
                        humantime::format_duration(d.window.to_std().unwrap_or_default()),
                        if key.is_empty() { String::new() } else { format!(" for {key}") }
                    ),
                    at: record.at,
                });
            }
        }
        out
    }

    /// Ages every window to `now`: detections whose groups all fell below
    /// their threshold stop firing; empty groups are forgotten.
    pub fn expire(&mut self, policies: &PolicySet, now: DateTime<Utc>) -> Vec<Change> {
        let mut out = Vec::new();
        self.windows.retain(|(asset, i), w| {
            let Some(d) = policies.controls.get(*i).and_then(|c| c.detect.as_ref()) else { return false };
            w.groups.retain(|_, times| {
                while times.front().is_some_and(|(t, _)| now - *t > d.window) {
                    times.pop_front();
                }
                !times.is_empty()
            });
            let was = !w.firing.is_empty();
            w.firing.retain(|k| w.groups.get(k).is_some_and(|t| t.len() >= d.threshold as usize));
            if was && w.firing.is_empty() {
                out.push(Change {
                    control: *i,
                    asset_id: asset.clone(),
                    firing: false,
                    record_id: None,
                    evidence: BTreeMap::new(),
                    message: format!(
                        "fewer than {} matching record(s) in the last {}",
                        d.threshold,
                        humantime::format_duration(d.window.to_std().unwrap_or_default())
                    ),
                    at: now,
                });
            }
            !w.groups.is_empty() || !w.firing.is_empty()
        });
        out
    }

    /// Whether the detection `control` is firing on `asset`.
    pub fn is_firing(&self, asset: &str, control: usize) -> bool {
        self.windows.get(&(asset.to_string(), control)).is_some_and(|w| !w.firing.is_empty())
    }

    /// Forgets every window (policies were replaced; indexes changed).
    pub fn clear(&mut self) {
        self.windows.clear();
    }
}

fn stream_name(s: DetectStream) -> &'static str {
    match s {
        DetectStream::Audit => "audit",
        DetectStream::Sla => "probe",
    }
}

/// The group key: the `group_by` values joined with `/`; a value that
/// can't be computed (a missing field) is `-`.
fn group_key(c: &CompiledControl, ctx: &cel::Context) -> String {
    let Some(d) = &c.detect else { return String::new() };
    d.group_by
        .iter()
        .map(|p| match p.execute(ctx) {
            Ok(cel::Value::String(s)) => s.to_string(),
            Ok(cel::Value::Int(i)) => i.to_string(),
            Ok(cel::Value::UInt(i)) => i.to_string(),
            Ok(cel::Value::Bool(b)) => b.to_string(),
            Ok(cel::Value::Null) | Err(_) => "-".to_string(),
            Ok(other) => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn evidence(key: &str, times: &VecDeque<(DateTime<Utc>, String)>, window: chrono::Duration) -> BTreeMap<String, FactValue> {
    let mut e = BTreeMap::new();
    e.insert("detect.group".into(), FactValue::Str(key.to_string()));
    e.insert("detect.count".into(), FactValue::Int(times.len() as i64));
    e.insert("detect.window_seconds".into(), FactValue::Int(window.num_seconds()));
    e.insert("detect.records".into(), FactValue::List(times.iter().map(|(_, id)| id.clone()).collect()));
    if let (Some(first), Some(last)) = (times.front(), times.back()) {
        e.insert("detect.first".into(), FactValue::Str(first.0.to_rfc3339()));
        e.insert("detect.last".into(), FactValue::Str(last.0.to_rfc3339()));
    }
    e
}
