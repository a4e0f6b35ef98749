//! The ClickHouse side of [`AlertLog`]: the notification log, silences
//! (every version kept; the latest wins), API write audit.

use ::clickhouse::Row;
use chrono::Utc;
use serde::Deserialize;

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::alert::dispatch::Sent;
use crate::alert::model::Alert;
use crate::alert::mute::Silence;
use crate::store::alerting::{violation_alert, AlertLog};
use crate::store::records::{ApiAuditRow, NotificationRow, SilenceRow, SilenceWriteRow};
use crate::store::{time, StoreError};

#[derive(Debug, Row, Deserialize)]
struct LastNotificationRow {
    receiver: String,
    group_key: String,
    last_sent: u32,
    last_escalation: u8,
    last_firing: Vec<String>,
    last_alerts: String,
}

#[derive(Debug, Row, Deserialize)]
struct OpenViolationRow {
    violation_id: String,
    asset_id: String,
    control_id: String,
    title: String,
    severity: String,
    frameworks: Vec<String>,
    evidence: String,
    opened_at: u32,
    label_keys: Vec<String>,
    label_values: Vec<String>,
}

#[async_trait]
impl AlertLog for ClickHouseStore {
    /// Records a delivered notification.
    async fn record_notifications(&self, sent: &[(Sent, &str)]) -> Result<(), StoreError> {
        let rows: Vec<NotificationRow> = sent.iter().map(|(s, status)| NotificationRow::new(s, status)).collect();
        self.insert_rows("notification_log", &rows).await
    }

    /// The last notification of every (receiver, group).
    async fn notification_log(&self) -> Result<Vec<Sent>, StoreError> {
        let rows: Vec<LastNotificationRow> = self.fetch(driftwatch_schemas::clickhouse::NOTIFICATION_LOG_SQL).await?;
        Ok(to_sent(rows))
    }

    /// The last notification of the groups `keys`.
    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<Sent>, StoreError> {
        let rows: Vec<LastNotificationRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::NOTIFICATION_LOG_GROUPS_SQL, |q| q.bind(keys.to_vec())).await?;
        Ok(to_sent(rows))
    }
    /// Silences not yet ended. A stored matcher that no longer parses is
    /// skipped with an error log (the silence then mutes nothing).
    async fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let rows: Vec<SilenceRow> = self.fetch(driftwatch_schemas::clickhouse::SILENCES_SQL).await?;
        Ok(rows.into_iter().filter_map(SilenceRow::into_silence).collect())
    }

    /// Creates or updates a silence (the latest version wins).
    async fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let row = SilenceWriteRow::new(s, Utc::now());
        self.insert_rows("silences", &[row]).await
    }

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError> {
        let row = ApiAuditRow::new(key, method, path, status, detail, Utc::now());
        self.insert_rows("api_audit", &[row]).await
    }

    /// Firing alerts for every open violation.
    async fn open_violation_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<OpenViolationRow> = self.fetch(driftwatch_schemas::clickhouse::OPEN_VIOLATIONS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let labels = r.label_keys.into_iter().zip(r.label_values).collect();
                violation_alert(
                    &r.violation_id,
                    &r.asset_id,
                    &r.control_id,
                    &r.title,
                    &r.severity,
                    &r.frameworks,
                    &r.evidence,
                    time(r.opened_at),
                    labels,
                )
            })
            .collect())
    }
}

fn to_sent(rows: Vec<LastNotificationRow>) -> Vec<Sent> {
    rows.into_iter()
        .map(|r| {
            NotificationRow {
                receiver: r.receiver,
                group_key: r.group_key,
                sent_at: r.last_sent,
                status: String::new(),
                escalation: r.last_escalation,
                firing: r.last_firing,
                alerts: r.last_alerts,
            }
            .into_sent()
        })
        .collect()
}
