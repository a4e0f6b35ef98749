//! Waivers (every version kept; the latest wins), and what the evidence
//! checks read: assets' labels, results of silent assets.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::records::WaiverRow;
use super::values::Status;
use super::StoreError;

/// Waivers and the reads of the missing-evidence checks.
#[async_trait]
pub trait WaiverLog {
    /// Writes a new version of a waiver (the latest version wins).
    async fn put_waiver(&self, row: &WaiverRow) -> Result<(), StoreError>;

    /// The latest version of every waiver (revoked and expired ones too).
    async fn waivers(&self) -> Result<Vec<WaiverRow>, StoreError>;

    /// The latest labels of every asset seen in the past week.
    async fn asset_labels(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError>;

    /// The latest results, neither unknown nor not applicable, of assets
    /// with no snapshot and no heartbeat since `since`.
    async fn silent_results(&self, since: DateTime<Utc>) -> Result<Vec<SilentResult>, StoreError>;
}

/// The latest result of a control on an asset that went silent.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentResult {
    pub asset_id: String,
    pub control_id: String,
    pub status: Status,
    pub last_evaluated: DateTime<Utc>,
    /// The asset's last snapshot or heartbeat.
    pub last_seen: DateTime<Utc>,
}
