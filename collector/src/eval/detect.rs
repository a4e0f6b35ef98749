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

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use chrono::{DateTime, Utc};
use driftwatch_schemas::{AuditEvent, FactValue, SlaMeasurement};

use super::facts::CelFacts;
use crate::policy::cel::{Constant, Guard};
use crate::policy::{CompiledControl, DetectStream, PolicySet};

/// One record of a stream, ready for detections: `value` is `event` (an
/// audit event) or `probe` (a probe result) as CEL sees it, built once per
/// record as CEL's runtime values and lent to every detection. Absent
/// optional fields are absent (so `has(event.object)` works), not null.
pub struct Record {
    pub stream: DetectStream,
    pub id: String,
    pub asset_id: String,
    pub at: DateTime<Utc>,
    pub value: Box<dyn Val>,
}

/// A record as it arrived, before anything is built for CEL: detections'
/// guards look at its fields first, and most records are skipped there.
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    Audit(&'a AuditEvent),
    Sla(&'a SlaMeasurement),
}

/// A field of a [`Raw`] record, as a guard compares it.
#[derive(Debug, PartialEq)]
enum FieldRef<'a> {
    Str(&'a str),
    Bool(bool),
}

impl<'a> Raw<'a> {
    /// The record of a message of the audit or SLA stream.
    pub fn of(msg: &'a driftwatch_schemas::Message) -> Option<Self> {
        match msg {
            driftwatch_schemas::Message::Audit(e) => Some(Raw::Audit(e)),
            driftwatch_schemas::Message::Sla(m) => Some(Raw::Sla(m)),
            driftwatch_schemas::Message::Snapshot(_) => None,
        }
    }

    pub fn stream(self) -> DetectStream {
        match self {
            Raw::Audit(_) => DetectStream::Audit,
            Raw::Sla(_) => DetectStream::Sla,
        }
    }

    /// Builds the record CEL sees.
    pub fn record(self) -> Record {
        match self {
            Raw::Audit(e) => Record::audit(e),
            Raw::Sla(m) => Record::sla(m),
        }
    }

    /// A top-level string or boolean field of the record as CEL sees it
    /// ([`Record::audit`], [`Record::sla`] build the same names); `None`
    /// when absent. `Err` for a name this does not know: its guard is not
    /// used.
    fn field(self, name: &str) -> Result<Option<FieldRef<'a>>, ()> {
        use FieldRef::{Bool, Str};
        Ok(match (self, name) {
            (Raw::Audit(e), "id") => Some(Str(&e.event_id)),
            (Raw::Audit(e), "source") => Some(Str(e.source.as_str())),
            (Raw::Audit(e), "hostname") => Some(Str(&e.hostname)),
            (Raw::Audit(e), "action") => Some(Str(&e.action)),
            (Raw::Audit(e), "outcome") => Some(Str(e.outcome.as_str())),
            (Raw::Audit(e), "object") => e.object.as_deref().map(Str),
            (Raw::Audit(e), "source_address") => e.source_address.as_deref().map(Str),
            (Raw::Sla(m), "id") => Some(Str(&m.probe_id)),
            (Raw::Sla(m), "target") => Some(Str(&m.target)),
            (Raw::Sla(m), "kind") => Some(Str(m.kind.as_str())),
            (Raw::Sla(m), "success") => Some(Bool(m.success)),
            (Raw::Sla(m), "error") => m.error.as_deref().map(Str),
            _ => return Err(()),
        })
    }

    /// Whether the record may satisfy `guard` (always, for a field this
    /// does not know).
    fn admits(self, guard: &Guard) -> bool {
        let Ok(value) = self.field(&guard.field) else { return true };
        value.is_some_and(|v| {
            guard.any_of.iter().any(|c| match (c, &v) {
                (Constant::Str(c), FieldRef::Str(v)) => c == v,
                (Constant::Bool(c), FieldRef::Bool(v)) => c == v,
                _ => false,
            })
        })
    }
}

/// A CEL map under construction, with string keys.
#[derive(Default)]
struct Fields(HashMap<CelMapKey<'static>, Box<dyn Val>>);

impl Fields {
    fn put(mut self, key: &'static str, v: Box<dyn Val>) -> Self {
        self.0.insert(CelMapKey::from(key), v);
        self
    }

    fn str(self, key: &'static str, v: &str) -> Self {
        self.put(key, string(v))
    }

    fn opt<T>(self, key: &'static str, v: Option<T>, f: impl FnOnce(T) -> Box<dyn Val>) -> Self {
        match v {
            Some(v) => self.put(key, f(v)),
            None => self,
        }
    }

    fn done(self) -> Box<dyn Val> {
        Box::new(CelMap::from(self.0))
    }
}

fn string(v: &str) -> Box<dyn Val> {
    Box::new(CelString::from(v.to_string()))
}

fn int(v: i64) -> Box<dyn Val> {
    Box::new(CelInt::from(v))
}

fn double(v: f64) -> Box<dyn Val> {
    Box::new(CelDouble::from(v))
}

impl Record {
    pub fn audit(e: &AuditEvent) -> Record {
        let actor = Fields::default()
            .opt("user", e.actor.user.as_deref(), string)
            .opt("uid", e.actor.uid, int)
            .opt("auid", e.actor.auid.as_deref(), string)
            .put("groups", Box::new(CelList::from(e.actor.groups.iter().map(|g| string(g)).collect::<Vec<_>>())));
        let extra = e.extra.iter().map(|(k, v)| (CelMapKey::from(k.clone()), string(v))).collect::<HashMap<_, _>>();
        let value = Fields::default()
            .str("id", &e.event_id)
            .str("source", e.source.as_str())
            .str("timestamp", &e.timestamp.to_rfc3339())
            .str("hostname", &e.hostname)
            .str("action", &e.action)
            .str("outcome", e.outcome.as_str())
            .put("actor", actor.done())
            .opt("object", e.object.as_deref(), string)
            .opt("source_address", e.source_address.as_deref(), string)
            .put("extra", Box::new(CelMap::from(extra)))
            .done();
        Record { stream: DetectStream::Audit, id: e.event_id.clone(), asset_id: e.asset_id.clone(), at: e.timestamp, value }
    }

    pub fn sla(m: &SlaMeasurement) -> Record {
        let h = m.host_metrics.as_ref();
        let value = Fields::default()
            .str("id", &m.probe_id)
            .str("target", &m.target)
            .str("kind", m.kind.as_str())
            .str("timestamp", &m.timestamp.to_rfc3339())
            .put("success", Box::new(CelBool::from(m.success)))
            .put("latency_ms", double(m.latency_us as f64 / 1000.0))
            .opt("status_code", m.status_code, |c| int(i64::from(c)))
            .opt("error", m.error.as_deref(), string)
            .opt("cpu_percent", h.map(|h| h.cpu_percent), double)
            .opt(
                "memory_used_percent",
                h.filter(|h| h.memory_total_bytes > 0).map(|h| h.memory_used_bytes as f64 * 100.0 / h.memory_total_bytes as f64),
                double,
            )
            .opt("disk_used_percent", h.map(|h| h.disk_used_percent), double)
            .opt("load1", h.map(|h| h.load1), double)
            .done();
        // Probe results have no id of their own; this one is stable under
        // redelivery.
        let id = format!("{}/{}/{}", m.asset_id, m.probe_id, m.timestamp.timestamp_micros());
        Record { stream: DetectStream::Sla, id, asset_id: m.asset_id.clone(), at: m.timestamp, value }
    }
}

/// Lends a record to a context as its stream's variable.
struct Lent<'a> {
    name: &'static str,
    value: &'a dyn Val,
}

impl VariableResolver for Lent<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        (variable == self.name).then_some(CowVal::Borrowed(self.value))
    }
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
    /// Counts `raw` in every detection of its stream that matches it;
    /// `applies` says whether a control applies to the record's asset, and
    /// `facts` (the asset's, when known) are visible to `match` and
    /// `group_by` beside the record (e.g. `accounts.group["sudo"].members`).
    /// The record is built for CEL only when a detection that applies
    /// admits it by its guards.
    pub fn observe(
        &mut self,
        policies: &PolicySet,
        raw: Raw<'_>,
        facts: Option<&CelFacts>,
        applies: impl Fn(&CompiledControl) -> bool,
    ) -> Vec<Change> {
        let candidates: Vec<(usize, &CompiledControl, &crate::policy::CompiledDetect)> = policies
            .detections(raw.stream())
            .iter()
            .filter_map(|&i| Some((i, &policies.controls[i], policies.controls[i].detect.as_ref()?)))
            .filter(|(_, c, d)| applies(c) && d.guards.iter().all(|g| raw.admits(g)))
            .collect();
        let mut out = Vec::new();
        if candidates.is_empty() {
            return out;
        }
        let record = raw.record();
        let root = crate::policy::cel::root_context();
        let mut asset = root.new_inner_scope();
        if let Some(f) = facts {
            asset.set_variable_resolver(f);
        }
        // The record in the innermost scope: it shadows a fact root of
        // the same name.
        let lent = Lent { name: record.stream.variable(), value: record.value.as_ref() };
        let mut ctx = asset.new_inner_scope();
        ctx.set_variable_resolver(&lent);
        for (i, c, d) in candidates {
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

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{Actor, AuditSource, HostMetrics, Outcome, ProbeKind};

    fn event(object: Option<&str>) -> AuditEvent {
        AuditEvent {
            event_id: "e1".into(),
            asset_id: "a".into(),
            hostname: "h".into(),
            source: AuditSource::Auditd,
            timestamp: Utc::now(),
            actor: Actor { user: Some("alice".into()), uid: Some(1000), auid: None, groups: vec![] },
            action: "sudo".into(),
            object: object.map(String::from),
            outcome: Outcome::Failure,
            source_address: object.map(|_| "10.0.0.1".to_string()),
            raw: String::new(),
            extra: Default::default(),
        }
    }

    fn probe(error: Option<&str>) -> SlaMeasurement {
        SlaMeasurement {
            asset_id: "a".into(),
            probe_id: "web".into(),
            target: "http://127.0.0.1/".into(),
            kind: ProbeKind::Http,
            timestamp: Utc::now(),
            success: error.is_none(),
            latency_us: 1500,
            status_code: Some(200),
            error: error.map(String::from),
            host_metrics: Some(HostMetrics {
                cpu_percent: 1.0,
                memory_used_bytes: 1,
                memory_total_bytes: 2,
                disk_used_percent: 3.0,
                load1: 0.1,
            }),
            cert_days_left: None,
            agent_health: None,
        }
    }

    /// What CEL sees at `variable.name` in the record built from `raw`.
    fn in_cel(raw: Raw<'_>, name: &str) -> Option<cel::Value> {
        let record = raw.record();
        let root = crate::policy::cel::root_context();
        let lent = Lent { name: record.stream.variable(), value: record.value.as_ref() };
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(&lent);
        let program = crate::policy::cel::compile(&format!("{}.{name}", record.stream.variable())).unwrap();
        program.execute(&ctx).ok()
    }

    #[test]
    fn the_fields_guards_read_are_the_fields_cel_sees() {
        let (full, bare) = (event(Some("/bin/ls")), event(None));
        let (failed, ok) = (probe(Some("tls: bad certificate")), probe(None));
        let audit = ["id", "source", "hostname", "action", "outcome", "object", "source_address"];
        let sla = ["id", "target", "kind", "success", "error"];
        let cases =
            [(Raw::Audit(&full), &audit[..]), (Raw::Audit(&bare), &audit[..]), (Raw::Sla(&failed), &sla[..]), (Raw::Sla(&ok), &sla[..])];
        for (raw, names) in cases {
            for name in names {
                let seen = match in_cel(raw, name) {
                    Some(cel::Value::String(s)) => Some(format!("{:?}", FieldRef::Str(&s))),
                    Some(cel::Value::Bool(b)) => Some(format!("{:?}", FieldRef::Bool(b))),
                    None => None,
                    Some(other) => panic!("{name}: {other:?}"),
                };
                assert_eq!(raw.field(name).map(|f| f.map(|f| format!("{f:?}"))), Ok(seen), "{name}");
            }
            // Fields it does not know (nested, numeric) leave guards unused.
            assert_eq!(raw.field("actor"), Err(()));
            assert!(raw.admits(&Guard { field: "latency_ms".into(), any_of: vec![] }));
        }
    }

    #[test]
    fn a_guard_admits_only_its_constants() {
        let e = event(None);
        let guard = |field: &str, any_of: Vec<Constant>| Guard { field: field.into(), any_of };
        let s = |v: &str| Constant::Str(v.into());
        assert!(Raw::Audit(&e).admits(&guard("action", vec![s("su"), s("sudo")])));
        assert!(!Raw::Audit(&e).admits(&guard("action", vec![s("su")])));
        assert!(!Raw::Audit(&e).admits(&guard("object", vec![s("/bin/ls")])), "an absent field");
        assert!(!Raw::Audit(&e).admits(&guard("action", vec![Constant::Bool(true)])), "another type");
        let p = probe(Some("refused"));
        assert!(Raw::Sla(&p).admits(&guard("success", vec![Constant::Bool(false)])));
        assert!(!Raw::Sla(&p).admits(&guard("success", vec![Constant::Bool(true)])));
    }
}
