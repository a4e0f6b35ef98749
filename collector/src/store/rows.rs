//! ClickHouse rows: one struct per table. The agent's records become rows
//! here; the rooms above build theirs (`eval::rows`, `policy::control_rows`).
//! Field order matches the columns of `schemas/clickhouse/*.sql` (RowBinary
//! is positional by the names listed in the INSERT).

use chrono::{DateTime, Utc};
use clickhouse::Row;
use driftwatch_schemas::{AuditEvent, ConfigSnapshot, SlaMeasurement};
use serde::{Deserialize, Serialize};

use super::secs;

pub(crate) fn millis(t: &DateTime<Utc>) -> u16 {
    t.timestamp_subsec_millis().min(999) as u16
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub asset_id: String,
    pub asset_kind: String,
    pub hostname: String,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub agent_id: String,
    pub agent_version: String,
    pub snapshot_id: String,
    pub sequence: i64,
    pub kind: String,
    pub collected_at: u32,
    pub received_at: u32,
    pub fact_count: u32,
    pub removed_paths: Vec<String>,
    pub batch_id: String,
    /// After a full snapshot, the digest of the asset's facts (equal
    /// digests: equal facts; `eval::facts_digest`); empty for a delta.
    #[serde(default)]
    pub facts_digest: String,
}

/// A snapshot row's `facts_digest`: 16 bytes of SHA-256, in hex, over
/// every fact's path, value type and value JSON (as fact rows hold them),
/// in path order. Whoever rebuilds an asset's facts from the fact rows can
/// check them against it.
pub fn facts_digest<P: AsRef<str>, T: AsRef<str>, V: AsRef<str>>(facts: impl IntoIterator<Item = (P, T, V)>) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for (path, kind, value) in facts {
        h.update(path.as_ref().as_bytes());
        h.update([0]);
        h.update(kind.as_ref().as_bytes());
        h.update([0]);
        h.update(value.as_ref().as_bytes());
        h.update([b'\n']);
    }
    hex::encode(&h.finalize()[..16])
}

/// What a snapshot's evaluation confirmed instead of storing it again
/// (`0017_confirmations.sql`): the controls whose results equal the ones
/// last stored for them, with those statuses, and the paths a full
/// snapshot no longer has (its changed facts are stored as fact rows).
/// Its own table, one row per stored copy (`batch_id` in the key): what
/// a copy confirms depends on what the collector knew, so a redelivered
/// snapshot's copy may differ, and each stays as its link sealed it.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ConfirmationRow {
    pub asset_id: String,
    pub snapshot_id: String,
    pub sequence: i64,
    pub collected_at: u32,
    pub collected_ms: u16,
    pub controls: Vec<String>,
    pub statuses: Vec<String>,
    pub removed_paths: Vec<String>,
    pub batch_id: String,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct FactRow {
    pub asset_id: String,
    pub snapshot_id: String,
    pub sequence: i64,
    pub snapshot_kind: String,
    pub collected_at: u32,
    pub path: String,
    pub value_type: String,
    pub value: String,
    pub batch_id: String,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct AuditRow {
    pub event_id: String,
    pub asset_id: String,
    pub hostname: String,
    pub source: String,
    pub timestamp: u32,
    pub timestamp_ms: u16,
    pub actor_user: String,
    pub actor_uid: Option<i64>,
    pub actor_auid: String,
    pub actor_groups: Vec<String>,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub source_address: String,
    pub raw: String,
    pub extra_keys: Vec<String>,
    pub extra_values: Vec<String>,
    pub batch_id: String,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct SlaRow {
    pub asset_id: String,
    pub probe_id: String,
    pub target: String,
    pub kind: String,
    pub timestamp: u32,
    pub timestamp_ms: u16,
    pub success: u8,
    pub latency_us: i64,
    pub status_code: Option<i32>,
    pub error: String,
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: Option<i64>,
    pub memory_total_bytes: Option<i64>,
    pub disk_used_percent: Option<f64>,
    pub load1: Option<f64>,
    pub batch_id: String,
    pub cert_days_left: Option<i32>,
    pub spool_depth: Option<i64>,
    pub spool_bytes: Option<i64>,
    pub agent_dropped: Option<i64>,
    pub last_sent: Option<u32>,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct EvaluationRow {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub severity: String,
    pub evaluated_at: u32,
    pub snapshot_id: String,
    pub sequence: i64,
    /// Empty since the `controls` catalog (migration 0012); older rows
    /// keep theirs, and their digests in the evidence chain with them.
    pub frameworks: Vec<String>,
    pub evidence: String,
    pub message: String,
    pub batch_id: String,
    pub evaluated_ms: u16,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ViolationRow {
    pub violation_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: String,
    pub event: String,
    pub at: u32,
    pub frameworks: Vec<String>,
    pub evidence: String,
    pub batch_id: String,
}

#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct DriftRow {
    pub drift_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: String,
    pub direction: String,
    pub from_status: String,
    pub to_status: String,
    pub at: u32,
    pub frameworks: Vec<String>,
    pub before: String,
    pub after: String,
    pub changed: Vec<String>,
    pub cause_event_id: String,
    pub cause_source: String,
    pub cause_action: String,
    pub cause_user: String,
    pub cause_object: String,
    pub cause_at: u32,
    pub cause_matched: String,
    pub snapshot_id: String,
    pub sequence: i64,
    pub batch_id: String,
}

/// Latest posture per (asset, control), read back at start.
#[derive(Debug, Row, Deserialize)]
pub struct PostureRow {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub last_evaluated: u32,
    pub since: u32,
    pub violation_id: String,
}

/// A snapshot's row and the rows of its facts: all of them, or those at
/// `only` (indexes into its facts: a store keeping changes only).
pub fn snapshot_rows(s: &ConfigSnapshot, batch_id: &str, now: &DateTime<Utc>, only: Option<&[usize]>) -> (SnapshotRow, Vec<FactRow>) {
    let kind = match s.kind {
        driftwatch_schemas::SnapshotKind::Full => "full",
        driftwatch_schemas::SnapshotKind::Delta => "delta",
    };
    let snap = SnapshotRow {
        asset_id: s.asset.id.clone(),
        asset_kind: s.asset.kind.as_str().to_string(),
        hostname: s.asset.hostname.clone(),
        label_keys: s.asset.labels.keys().cloned().collect(),
        label_values: s.asset.labels.values().cloned().collect(),
        agent_id: s.agent_id.clone(),
        agent_version: s.agent_version.clone(),
        snapshot_id: s.snapshot_id.clone(),
        sequence: s.sequence,
        kind: kind.to_string(),
        collected_at: secs(&s.collected_at),
        received_at: secs(now),
        fact_count: s.facts.len() as u32,
        removed_paths: s.removed_paths.clone(),
        batch_id: batch_id.to_string(),
        facts_digest: String::new(),
    };
    let fact = |f: &driftwatch_schemas::Fact| FactRow {
        asset_id: s.asset.id.clone(),
        snapshot_id: s.snapshot_id.clone(),
        sequence: s.sequence,
        snapshot_kind: kind.to_string(),
        collected_at: secs(&s.collected_at),
        path: f.path.clone(),
        value_type: f.value.type_name().to_string(),
        value: f.value.to_json(),
        batch_id: batch_id.to_string(),
    };
    let facts = match only {
        None => s.facts.iter().map(fact).collect(),
        Some(at) => at.iter().filter_map(|i| s.facts.get(*i)).map(fact).collect(),
    };
    (snap, facts)
}

pub fn audit_row(a: &AuditEvent, batch_id: &str) -> AuditRow {
    AuditRow {
        event_id: a.event_id.clone(),
        asset_id: a.asset_id.clone(),
        hostname: a.hostname.clone(),
        source: a.source.as_str().to_string(),
        timestamp: secs(&a.timestamp),
        timestamp_ms: millis(&a.timestamp),
        actor_user: a.actor.user.clone().unwrap_or_default(),
        actor_uid: a.actor.uid,
        actor_auid: a.actor.auid.clone().unwrap_or_default(),
        actor_groups: a.actor.groups.clone(),
        action: a.action.clone(),
        object: a.object.clone().unwrap_or_default(),
        outcome: a.outcome.as_str().to_string(),
        source_address: a.source_address.clone().unwrap_or_default(),
        raw: a.raw.clone(),
        extra_keys: a.extra.keys().cloned().collect(),
        extra_values: a.extra.values().cloned().collect(),
        batch_id: batch_id.to_string(),
    }
}

pub fn sla_row(m: &SlaMeasurement, batch_id: &str) -> SlaRow {
    let hm = m.host_metrics.as_ref();
    SlaRow {
        asset_id: m.asset_id.clone(),
        probe_id: m.probe_id.clone(),
        target: m.target.clone(),
        kind: m.kind.as_str().to_string(),
        timestamp: secs(&m.timestamp),
        timestamp_ms: millis(&m.timestamp),
        success: u8::from(m.success),
        latency_us: m.latency_us,
        status_code: m.status_code,
        error: m.error.clone().unwrap_or_default(),
        cpu_percent: hm.map(|h| h.cpu_percent),
        memory_used_bytes: hm.map(|h| h.memory_used_bytes),
        memory_total_bytes: hm.map(|h| h.memory_total_bytes),
        disk_used_percent: hm.map(|h| h.disk_used_percent),
        load1: hm.map(|h| h.load1),
        batch_id: batch_id.to_string(),
        cert_days_left: m.cert_days_left,
        spool_depth: m.agent_health.as_ref().map(|h| h.spool_depth),
        spool_bytes: m.agent_health.as_ref().map(|h| h.spool_bytes),
        agent_dropped: m.agent_health.as_ref().map(|h| h.dropped),
        last_sent: m.agent_health.as_ref().and_then(|h| h.last_sent.as_ref()).map(secs),
    }
}

/// One control of the catalog (`controls`): what a result's mapping and
/// severity are, read by dashboards (evaluations do not repeat them).
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ControlRow {
    pub control_id: String,
    pub title: String,
    pub severity: String,
    pub pack: String,
    pub frameworks: Vec<String>,
    pub loaded_at: u32,
}

/// A row of `queries/current_results.sql`.
#[derive(Debug, Row, Deserialize)]
pub struct CurrentRow {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub last_evaluated: u32,
    pub opened_at: u32,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub evidence_at: u32,
}

/// A row of `queries/status_at.sql`.
#[derive(Debug, Row, Deserialize)]
pub struct StatusAtRow {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
}

/// A row of `queries/status_history.sql`.
#[derive(Debug, Row, Deserialize)]
pub struct HistoryRow {
    pub asset_id: String,
    pub control_id: String,
    pub evaluated_at: u32,
    pub status: String,
}

/// A row of `queries/results_at.sql`.
#[derive(Debug, Row, Deserialize)]
pub struct ResultAtRow {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub last_evaluated: u32,
    pub label_keys: Vec<String>,
    pub label_values: Vec<String>,
    pub evidence_at: u32,
}

/// One framework score of a scope at an instant (`compliance_scores`).
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ScoreRow {
    pub at: u32,
    pub framework: String,
    pub scope: String,
    pub label_key: String,
    pub group_value: String,
    pub score: f64,
    pub passing: u32,
    pub partial: u32,
    pub failing: u32,
    pub applicable: u32,
    pub waived: u32,
    pub score_without_waivers: f64,
    /// What the score covers of its framework's catalog (`None`: no catalog).
    pub catalog_requirements: Option<u32>,
    pub not_assessed: Option<u32>,
    pub coverage: Option<f64>,
    /// Of the requirements with evidence, those with attested evidence only.
    pub attested: Option<u32>,
}
