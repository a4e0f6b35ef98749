//! Reads of results: the posture now and at an instant, histories,
//! violations with their lifecycle, assets with their last snapshot and
//! heartbeat, drift, and the evaluation or audit event behind a result.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rows::{AuditRow, DriftRow};
use super::values::Status;
use super::StoreError;

/// What the API, reports, scores and posture restore read.
#[async_trait]
pub trait Views {
    /// The latest posture of every (asset, control) and its open violation.
    async fn load_posture(&self) -> Result<Vec<LatestStatus>, StoreError>;

    /// The latest result of every (asset, control) with the asset's labels;
    /// `since` is when a failing control's violation opened, else its last
    /// evaluation.
    async fn current_results(&self) -> Result<Vec<ControlResult>, StoreError>;

    /// The posture at an instant (the last evaluation at or before it),
    /// with the assets' labels as of then; `since` is that evaluation's time.
    async fn results_at(&self, at: DateTime<Utc>) -> Result<Vec<ControlResult>, StoreError>;

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

/// The latest status of a control on an asset, as the engine's posture is
/// restored from it (`PostureEntry::restored`).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestStatus {
    pub asset_id: String,
    pub control_id: String,
    pub status: Status,
    /// Since when the control has had this status.
    pub since: DateTime<Utc>,
    pub last_evaluated: DateTime<Utc>,
    /// The open violation, while the control fails.
    pub violation_id: Option<String>,
}

/// The latest result of one control on one asset.
#[derive(Debug, Clone)]
pub struct ControlResult {
    pub asset_id: String,
    /// The asset's labels (one map per asset, shared by its results).
    pub labels: std::sync::Arc<BTreeMap<String, String>>,
    pub control_id: String,
    pub status: Status,
    /// Since when the control has had this status.
    pub since: DateTime<Utc>,
    /// When the asset's latest snapshot was collected: the age of the
    /// evidence behind a fact check (`None`: no snapshot).
    pub evidence_at: Option<DateTime<Utc>>,
}

/// One label map per asset, shared by the results built for it (a
/// posture holds hundreds of results per asset).
#[derive(Default)]
pub struct SharedLabels(std::collections::HashMap<String, std::sync::Arc<BTreeMap<String, String>>>);

impl SharedLabels {
    /// The asset's labels: built by `labels` for its first result only.
    pub fn of(&mut self, asset_id: &str, labels: impl FnOnce() -> BTreeMap<String, String>) -> std::sync::Arc<BTreeMap<String, String>> {
        if let Some(l) = self.0.get(asset_id) {
            return l.clone();
        }
        let l = std::sync::Arc::new(labels());
        self.0.insert(asset_id.to_string(), l.clone());
        l
    }
}

/// The evaluation history of one control on one asset.
#[derive(Debug, Clone)]
pub struct History {
    pub asset_id: String,
    pub control_id: String,
    /// The status at `from` (the last evaluation at or before it).
    pub initial: Option<Status>,
    /// Evaluations after `from`, in time order (repeats are fine).
    pub changes: Vec<(DateTime<Utc>, Status)>,
}
