//! What alerting keeps: the notification log, silences, the API's write
//! audit, and the open violations a (re)started collector alerts from.

use async_trait::async_trait;

use super::StoreError;
use crate::alert::dispatch::Sent;
use crate::alert::model::Alert;
use crate::alert::mute::Silence;

/// Alerting's durable state.
#[async_trait]
pub trait AlertLog {
    /// Records delivered notifications (each with its status: `firing`,
    /// `resolved`), in one write.
    async fn record_notifications(&self, sent: &[(Sent, &str)]) -> Result<(), StoreError>;

    /// The last notification of every (receiver, group).
    async fn notification_log(&self) -> Result<Vec<Sent>, StoreError>;

    /// The last notification of the groups `keys`.
    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<Sent>, StoreError>;

    /// Silences not yet ended. A stored matcher that no longer parses is
    /// skipped with an error log (the silence then mutes nothing).
    async fn silences(&self) -> Result<Vec<Silence>, StoreError>;

    /// Creates or updates a silence (the latest version wins).
    async fn put_silence(&self, s: &Silence) -> Result<(), StoreError>;

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError>;

    /// Firing alerts for every open violation.
    async fn open_violation_alerts(&self) -> Result<Vec<Alert>, StoreError>;
}

/// The alert of an open violation (labels and annotations as the engine's
/// violation alerts carry them), for either store.
#[allow(clippy::too_many_arguments)]
pub(crate) fn violation_alert(
    violation_id: String,
    asset_id: String,
    control_id: String,
    title: String,
    severity: String,
    mut frameworks: Vec<String>,
    evidence: &str,
    opened_at: chrono::DateTime<chrono::Utc>,
    labels: crate::alert::matcher::Labels,
) -> Alert {
    use std::collections::BTreeMap;
    let mut labels = labels;
    labels.insert("alertname".into(), "violation".into());
    labels.insert("asset".into(), asset_id.clone());
    labels.insert("control".into(), control_id);
    labels.insert("severity".into(), severity);
    frameworks.sort();
    labels.insert("frameworks".into(), frameworks.join(","));
    let evidence: BTreeMap<String, serde_json::Value> = serde_json::from_str(evidence).unwrap_or_default();
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), format!("{title} on {asset_id}"));
    annotations.insert("title".into(), title);
    annotations.insert("evidence".into(), evidence.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("\n"));
    Alert { labels, annotations, starts_at: opened_at, ends_at: None, instance: violation_id, one_shot: false }
}
