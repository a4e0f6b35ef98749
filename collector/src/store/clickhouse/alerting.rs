//! The ClickHouse side of [`AlertLog`]: the notification log, silences
//! (every version kept; the latest wins), API write audit.

use ::clickhouse::Row;
use chrono::Utc;
use serde::Deserialize;

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::alerting::{AlertLog, OpenViolation};
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
    async fn record_notifications(&self, rows: &[NotificationRow]) -> Result<(), StoreError> {
        self.insert_rows("notification_log", rows).await
    }

    /// The last notification of every (receiver, group).
    async fn notification_log(&self) -> Result<Vec<NotificationRow>, StoreError> {
        let rows: Vec<LastNotificationRow> = self.fetch(driftwatch_schemas::clickhouse::NOTIFICATION_LOG_SQL).await?;
        Ok(last_rows(rows))
    }

    /// The last notification of the groups `keys`.
    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<NotificationRow>, StoreError> {
        let rows: Vec<LastNotificationRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::NOTIFICATION_LOG_GROUPS_SQL, |q| q.bind(keys.to_vec())).await?;
        Ok(last_rows(rows))
    }
    async fn silences(&self) -> Result<Vec<SilenceRow>, StoreError> {
        self.fetch(driftwatch_schemas::clickhouse::SILENCES_SQL).await
    }

    async fn put_silence(&self, row: &SilenceWriteRow) -> Result<(), StoreError> {
        self.insert_rows("silences", std::slice::from_ref(row)).await
    }

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError> {
        let row = ApiAuditRow::new(key, method, path, status, detail, Utc::now());
        self.insert_rows("api_audit", &[row]).await
    }

    async fn open_violations(&self) -> Result<Vec<OpenViolation>, StoreError> {
        let rows: Vec<OpenViolationRow> = self.fetch(driftwatch_schemas::clickhouse::OPEN_VIOLATIONS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| OpenViolation {
                labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                violation_id: r.violation_id,
                asset_id: r.asset_id,
                control_id: r.control_id,
                title: r.title,
                severity: r.severity,
                frameworks: r.frameworks,
                evidence: r.evidence,
                opened_at: time(r.opened_at),
            })
            .collect())
    }
}

/// The log's rows of the last notification per group.
fn last_rows(rows: Vec<LastNotificationRow>) -> Vec<NotificationRow> {
    rows.into_iter()
        .map(|r| NotificationRow {
            receiver: r.receiver,
            group_key: r.group_key,
            sent_at: r.last_sent,
            status: String::new(),
            escalation: r.last_escalation,
            firing: r.last_firing,
            alerts: r.last_alerts,
        })
        .collect()
}
