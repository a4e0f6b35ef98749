//! Reads for the API: violations with their lifecycle, assets with their
//! last snapshot and heartbeat, and the evaluation behind a result.

use std::collections::BTreeMap;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::clickhouse::ClickHouseStore;
use super::{secs, time, StoreError};

#[derive(Debug, Row, Deserialize)]
struct ViolationLifeRow {
    violation_id: String,
    asset_id: String,
    control_id: String,
    title: String,
    severity: String,
    frameworks: Vec<String>,
    opened_at: u32,
    resolved_at: u32,
    last_event: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
}

/// A violation and its lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Violation {
    pub violation_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: String,
    /// `framework:requirement`.
    pub frameworks: Vec<String>,
    /// `open` or `resolved`.
    pub status: String,
    pub opened_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Row, Deserialize)]
struct AssetRow {
    asset_id: String,
    kind: String,
    hostname: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
    agent_id: String,
    agent_version: String,
    last_collected: u32,
    last_received: u32,
    last_sequence: i64,
    last_heartbeat: u32,
}

/// An asset as the store knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssetInfo {
    pub asset_id: String,
    pub kind: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub agent_id: String,
    pub agent_version: String,
    /// The last snapshot: collected (agent clock), received (collector).
    pub last_snapshot_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub last_sequence: i64,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

/// The evaluation behind a result.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct EvaluationAt {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    /// When it was evaluated.
    pub at: u32,
    pub snapshot_id: String,
    pub sequence: i64,
    /// The facts the check read, as JSON.
    pub evidence: String,
    pub message: String,
    pub batch_id: String,
}

impl ClickHouseStore {
    /// Every violation, newest first.
    pub async fn violations(&self) -> Result<Vec<Violation>, StoreError> {
        let rows: Vec<ViolationLifeRow> = self.fetch(driftwatch_schemas::clickhouse::VIOLATIONS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| Violation {
                status: if r.last_event == "resolved" { "resolved".into() } else { "open".into() },
                opened_at: (r.opened_at > 0).then(|| time(r.opened_at)),
                resolved_at: (r.resolved_at > 0).then(|| time(r.resolved_at)),
                labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                violation_id: r.violation_id,
                asset_id: r.asset_id,
                control_id: r.control_id,
                title: r.title,
                severity: r.severity,
                frameworks: r.frameworks,
            })
            .collect())
    }

    /// Every asset with a snapshot.
    pub async fn assets(&self) -> Result<Vec<AssetInfo>, StoreError> {
        let rows: Vec<AssetRow> = self.fetch(driftwatch_schemas::clickhouse::ASSETS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| AssetInfo {
                labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                last_snapshot_at: time(r.last_collected),
                last_received_at: time(r.last_received),
                last_heartbeat_at: (r.last_heartbeat > 0).then(|| time(r.last_heartbeat)),
                asset_id: r.asset_id,
                kind: r.kind,
                hostname: r.hostname,
                agent_id: r.agent_id,
                agent_version: r.agent_version,
                last_sequence: r.last_sequence,
            })
            .collect())
    }

    /// The audit event `id` of `asset`, if there is one (the record behind
    /// a detection's result).
    pub async fn audit_event(&self, asset: &str, id: &str) -> Result<Option<super::rows::AuditRow>, StoreError> {
        let (a, i) = (asset.to_string(), id.to_string());
        let rows: Vec<super::rows::AuditRow> =
            self.fetch_bound("SELECT ?fields FROM audit_events WHERE asset_id = ? AND event_id = ? LIMIT 1", |q| q.bind(a).bind(i)).await?;
        Ok(rows.into_iter().next())
    }

    /// The last evaluation of `control` on `asset` at or before `at`.
    pub async fn evaluation_at(&self, asset: &str, control: &str, at: DateTime<Utc>) -> Result<Option<EvaluationAt>, StoreError> {
        let (a, c, t) = (asset.to_string(), control.to_string(), secs(&at));
        let rows: Vec<EvaluationAt> =
            self.fetch_bound(driftwatch_schemas::clickhouse::EVALUATION_AT_SQL, |q| q.bind(a).bind(c).bind(t)).await?;
        Ok(rows.into_iter().next())
    }
}
