//! What alerting keeps: the notification log, silences, the API's write
//! audit, and the open violations a (re)started collector alerts from.

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::records::{NotificationRow, SilenceRow, SilenceWriteRow};
use super::StoreError;

/// Alerting's durable state.
#[async_trait]
pub trait AlertLog {
    /// Records delivered notifications, in one write.
    async fn record_notifications(&self, rows: &[NotificationRow]) -> Result<(), StoreError>;

    /// The last notification of every (receiver, group).
    async fn notification_log(&self) -> Result<Vec<NotificationRow>, StoreError>;

    /// The last notification of the groups `keys`.
    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<NotificationRow>, StoreError>;

    /// Silences not yet ended (the latest version of each).
    async fn silences(&self) -> Result<Vec<SilenceRow>, StoreError>;

    /// Writes a version of a silence (the latest version wins).
    async fn put_silence(&self, s: &SilenceWriteRow) -> Result<(), StoreError>;

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError>;

    /// Every open violation, with its asset's labels.
    async fn open_violations(&self) -> Result<Vec<OpenViolation>, StoreError>;
}

/// An open violation as stored: what its firing alert is rebuilt from
/// when a collector (re)starts (`Alert::reopened`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenViolation {
    pub violation_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: String,
    pub frameworks: Vec<String>,
    /// The facts the check read, as the row's JSON.
    pub evidence: String,
    pub opened_at: DateTime<Utc>,
    pub labels: std::collections::BTreeMap<String, String>,
}
