//! Reads of results: the posture now and at an instant, histories,
//! violations with their lifecycle, assets with their last snapshot and
//! heartbeat, drift, and the evaluation or audit event behind a result.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rows::{AuditRow, DriftRow};
use super::StoreError;
use crate::eval::PostureEntry;
use crate::score::effectiveness::History;

/// What the API, reports, scores and posture restore read.
#[async_trait]
pub trait Views {
    /// The latest posture of every (asset, control) and its open violation.
    async fn load_posture(&self) -> Result<Vec<(String, String, PostureEntry)>, StoreError>;

    /// The latest result of every (asset, control) with the asset's labels;
    /// `since` is when a failing control's violation opened, else its last
    /// evaluation.
    async fn current_results(&self) -> Result<Vec<crate::score::Result>, StoreError>;

    /// The posture at an instant (the last evaluation at or before it),
    /// with the assets' labels as of then; `since` is that evaluation's time.
    async fn results_at(&self, at: DateTime<Utc>) -> Result<Vec<crate::score::Result>, StoreError>;

    /// Every (asset, control)'s status at `from` and its evaluations in
    /// (from, to], for operating effectiveness (change points only).
    async fn histories(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<History>, StoreError>;

    /// The latest drift events, newest first, of `asset` or of all.
    async fn recent_drifts(&self, asset: Option<&str>, limit: u32) -> Result<Vec<DriftRow>, StoreError>;

    /// Every violation, newest first.
    async fn violations(&self) -> Result<Vec<Violation>, StoreError>;

    /// Every asset with a snapshot.
    async fn assets(&self) -> Result<Vec<AssetInfo>, StoreError>;

    /// The audit event `id` of `asset`, if there is one (the record behind
    /// a detection's result).
    async fn audit_event(&self, asset: &str, id: &str) -> Result<Option<AuditRow>, StoreError>;

    /// The last evaluation of `control` on `asset` at or before `at`.
    async fn evaluation_at(&self, asset: &str, control: &str, at: DateTime<Utc>) -> Result<Option<EvaluationAt>, StoreError>;
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
#[derive(Debug, Clone, ::clickhouse::Row, Serialize, Deserialize, PartialEq)]
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
