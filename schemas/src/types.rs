//! Rust types of the three streams. Field for field, they mirror the Avro
//! schemas in `schemas/avro/`; the JSON form (serde) is what
//! `driftwatch-agent snapshot` prints and `driftwatch-collector evaluate` reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of thing an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    Host,
    K8sNode,
    K8sCluster,
}

impl AssetKind {
    /// The Avro enum symbols, in schema order.
    pub const SYMBOLS: [&'static str; 3] = ["host", "k8s_node", "k8s_cluster"];

    /// The name used in JSON, policy packs and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Host => "host",
            AssetKind::K8sNode => "k8s-node",
            AssetKind::K8sCluster => "k8s-cluster",
        }
    }
}

/// Identity of a monitored asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Stable id; the Kafka message key, so one asset's messages stay ordered.
    pub id: String,
    pub kind: AssetKind,
    pub hostname: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Full snapshots replace an asset's facts; deltas patch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Full,
    Delta,
}

/// A typed fact value. In JSON it is the plain value (`null`, `true`, `3`,
/// `2.5`, `"no"`, `["a","b"]`); read by [`FactValueVisitor`] (what
/// `#[serde(untagged)]` would accept, without buffering the value and
/// trying each variant in turn: evidence of every open violation is read
/// back this way at a restart).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FactValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

impl From<bool> for FactValue {
    fn from(v: bool) -> Self {
        FactValue::Bool(v)
    }
}
impl From<i64> for FactValue {
    fn from(v: i64) -> Self {
        FactValue::Int(v)
    }
}
impl From<u32> for FactValue {
    fn from(v: u32) -> Self {
        FactValue::Int(v.into())
    }
}
impl From<f64> for FactValue {
    fn from(v: f64) -> Self {
        FactValue::Float(v)
    }
}
impl From<&str> for FactValue {
    fn from(v: &str) -> Self {
        FactValue::Str(v.to_string())
    }
}
impl From<String> for FactValue {
    fn from(v: String) -> Self {
        FactValue::Str(v)
    }
}
impl From<Vec<String>> for FactValue {
    fn from(v: Vec<String>) -> Self {
        FactValue::List(v)
    }
}

struct FactValueVisitor;

impl<'de> serde::de::Visitor<'de> for FactValueVisitor {
    type Value = FactValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("null, a boolean, a number, a string or a list of strings")
    }
    fn visit_unit<E>(self) -> Result<FactValue, E> {
        Ok(FactValue::Null)
    }
    fn visit_none<E>(self) -> Result<FactValue, E> {
        Ok(FactValue::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<FactValue, E> {
        Ok(FactValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<FactValue, E> {
        Ok(FactValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<FactValue, E> {
        // Past i64, a float (as the untagged form read it).
        Ok(i64::try_from(v).map(FactValue::Int).unwrap_or(FactValue::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<FactValue, E> {
        Ok(FactValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<FactValue, E> {
        Ok(FactValue::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<FactValue, E> {
        Ok(FactValue::Str(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FactValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(FactValue::List(items))
    }
}

impl<'de> Deserialize<'de> for FactValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FactValue, D::Error> {
        d.deserialize_any(FactValueVisitor)
    }
}

impl FactValue {
    /// The type's name as stored in ClickHouse (`value_type` column).
    pub fn type_name(&self) -> &'static str {
        match self {
            FactValue::Null => "null",
            FactValue::Bool(_) => "bool",
            FactValue::Int(_) => "int",
            FactValue::Float(_) => "float",
            FactValue::Str(_) => "string",
            FactValue::List(_) => "list",
        }
    }

    /// The value as compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_string())
    }
}

/// One configuration fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// A fact path (see [`crate::FactPath`]).
    pub path: String,
    pub value: FactValue,
}

/// A set of facts about one asset: the `driftwatch.snapshots` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    pub asset: Asset,
    pub agent_id: String,
    pub agent_version: String,
    pub snapshot_id: String,
    /// +1 per snapshot of this asset, full or delta.
    pub sequence: i64,
    pub collected_at: DateTime<Utc>,
    pub kind: SnapshotKind,
    pub facts: Vec<Fact>,
    #[serde(default)]
    pub removed_paths: Vec<String>,
}

/// Where an audit event was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditSource {
    Auditd,
    Authlog,
    Journald,
    K8sAudit,
}

impl AuditSource {
    pub const SYMBOLS: [&'static str; 4] = ["auditd", "authlog", "journald", "k8s_audit"];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditSource::Auditd => "auditd",
            AuditSource::Authlog => "authlog",
            AuditSource::Journald => "journald",
            AuditSource::K8sAudit => "k8s-audit",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub user: Option<String>,
    pub uid: Option<i64>,
    pub auid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Result of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub const SYMBOLS: [&'static str; 3] = ["success", "failure", "unknown"];

    pub fn as_str(self) -> &'static str {
        Self::SYMBOLS[self as usize]
    }
}

/// One security-relevant event: the `driftwatch.audit` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub event_id: String,
    pub asset_id: String,
    pub hostname: String,
    pub source: AuditSource,
    pub timestamp: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub object: Option<String>,
    pub outcome: Outcome,
    pub source_address: Option<String>,
    pub raw: String,
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// Probe kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Http,
    Tcp,
    Tls,
    Dns,
    Host,
}

impl ProbeKind {
    pub const SYMBOLS: [&'static str; 5] = ["http", "tcp", "tls", "dns", "host"];

    pub fn as_str(self) -> &'static str {
        Self::SYMBOLS[self as usize]
    }
}

/// Host resource figures sampled by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    pub cpu_percent: f64,
    pub memory_used_bytes: i64,
    pub memory_total_bytes: i64,
    pub disk_used_percent: f64,
    pub load1: f64,
}

/// The probe id of an agent's heartbeat (an SLA measurement of kind
/// `host`): proof that the agent is alive even when nothing changes, so
/// that its assets' evidence stays current.
pub const HEARTBEAT_PROBE_ID: &str = "heartbeat";

/// One probe result: the `driftwatch.sla` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaMeasurement {
    pub asset_id: String,
    pub probe_id: String,
    pub target: String,
    pub kind: ProbeKind,
    pub timestamp: DateTime<Utc>,
    pub success: bool,
    pub latency_us: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub host_metrics: Option<HostMetrics>,
    /// TLS probes: whole days until the server certificate expires.
    #[serde(default)]
    pub cert_days_left: Option<i32>,
    /// Heartbeats: the agent's own delivery health.
    #[serde(default)]
    pub agent_health: Option<AgentHealth>,
}

impl SlaMeasurement {
    /// A bare heartbeat of `asset_id`'s agent at `at` (the agent's own adds
    /// its health): it is alive, nothing else measured.
    pub fn heartbeat(asset_id: &str, at: DateTime<Utc>) -> SlaMeasurement {
        SlaMeasurement {
            asset_id: asset_id.into(),
            probe_id: HEARTBEAT_PROBE_ID.into(),
            target: "agent".into(),
            kind: ProbeKind::Host,
            timestamp: at,
            success: true,
            latency_us: 0,
            status_code: None,
            error: None,
            host_metrics: None,
            cert_days_left: None,
            agent_health: None,
        }
    }
}

/// An agent's delivery health, carried by its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub spool_depth: i64,
    pub spool_bytes: i64,
    pub dropped: i64,
    pub last_sent: Option<DateTime<Utc>>,
}

/// Any message of the three streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Snapshot(ConfigSnapshot),
    Audit(AuditEvent),
    Sla(SlaMeasurement),
}

impl Message {
    /// The Kafka key: messages of one asset go to one partition, in order.
    pub fn asset_id(&self) -> &str {
        match self {
            Message::Snapshot(s) => &s.asset.id,
            Message::Audit(a) => &a.asset_id,
            Message::Sla(m) => &m.asset_id,
        }
    }

    pub fn stream(&self) -> Stream {
        match self {
            Message::Snapshot(_) => Stream::Snapshots,
            Message::Audit(_) => Stream::Audit,
            Message::Sla(_) => Stream::Sla,
        }
    }
}

/// The three streams, each its own topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Snapshots,
    Audit,
    Sla,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Snapshots, Stream::Audit, Stream::Sla];

    /// Default topic name.
    pub fn default_topic(self) -> &'static str {
        match self {
            Stream::Snapshots => "driftwatch.snapshots",
            Stream::Audit => "driftwatch.audit",
            Stream::Sla => "driftwatch.sla",
        }
    }
}

/// The brokers both binaries connect to unless configured: the local
/// broker `deploy/local/services` starts.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The default topic of records the collector could not take (the reason
/// in a header).
pub const DEAD_LETTER_TOPIC: &str = "driftwatch.dead-letter";

#[cfg(test)]
mod tests {
    use super::*;

    /// The derived untagged form the visitor replaces.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        List(Vec<String>),
    }

    fn as_untagged(v: FactValue) -> Untagged {
        match v {
            FactValue::Null => Untagged::Null,
            FactValue::Bool(b) => Untagged::Bool(b),
            FactValue::Int(i) => Untagged::Int(i),
            FactValue::Float(f) => Untagged::Float(f),
            FactValue::Str(s) => Untagged::Str(s),
            FactValue::List(l) => Untagged::List(l),
        }
    }

    /// Fact values read from JSON and YAML as the untagged form read them,
    /// and refused where it refused them.
    #[test]
    fn fact_values_read_as_the_untagged_form_did() {
        let json = [
            "null",
            "true",
            "3",
            "-7",
            "2.5",
            "18446744073709551615",
            "\"no\"",
            "\"a\\\"b\"",
            "[]",
            "[\"a\",\"b\"]",
            "[1]",
            "{\"a\":1}",
            "[\"a\",null]",
        ];
        for text in json {
            let ours = serde_json::from_str::<FactValue>(text).map(as_untagged).ok();
            let theirs = serde_json::from_str::<Untagged>(text).ok();
            assert_eq!(ours, theirs, "{text}");
        }
        for text in ["~", "yes", "3", "2.5", "x", "[a, b]", "{a: 1}"] {
            let ours = serde_yaml::from_str::<FactValue>(text).map(as_untagged).ok();
            let theirs = serde_yaml::from_str::<Untagged>(text).ok();
            assert_eq!(ours, theirs, "{text}");
        }
        let evidence: BTreeMap<String, FactValue> = serde_json::from_str(r#"{"a":["x"],"b":0640,"c":"0640"}"#).unwrap_or_default();
        assert!(evidence.is_empty(), "a leading zero is not JSON");
        let evidence: BTreeMap<String, FactValue> = serde_json::from_str(r#"{"a":["x"],"b":640,"c":"0640"}"#).unwrap();
        assert_eq!(evidence["a"], FactValue::List(vec!["x".into()]));
        assert_eq!(evidence["b"], FactValue::Int(640));
    }
}
