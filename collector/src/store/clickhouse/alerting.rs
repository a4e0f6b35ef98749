//! The ClickHouse side of [`AlertLog`]: the notification log, silences
//! (every version kept; the latest wins), API write audit.

use ::clickhouse::Row;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::alert::dispatch::Sent;
use crate::alert::matcher::Matcher;
use crate::alert::model::Alert;
use crate::alert::mute::Silence;
use crate::store::alerting::{violation_alert, AlertLog};
use crate::store::{secs, time, StoreError};

#[derive(Debug, Row, Serialize, Deserialize)]
struct NotificationRow {
    receiver: String,
    group_key: String,
    sent_at: u32,
    status: String,
    escalation: u8,
    firing: Vec<String>,
    alerts: String,
}

#[derive(Debug, Row, Deserialize)]
struct LastNotificationRow {
    receiver: String,
    group_key: String,
    last_sent: u32,
    last_escalation: u8,
    last_firing: Vec<String>,
    last_alerts: String,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct SilenceRow {
    silence_id: String,
    matchers: Vec<String>,
    starts_at: u32,
    ends_at: u32,
    created_by: String,
    comment: String,
}

#[derive(Debug, Row, Serialize)]
struct SilenceWriteRow {
    silence_id: String,
    matchers: Vec<String>,
    starts_at: u32,
    ends_at: u32,
    created_by: String,
    comment: String,
    updated_at: u32,
    version: u64,
}

#[derive(Debug, Row, Serialize)]
struct ApiAuditRow {
    at: u32,
    key_name: String,
    method: String,
    path: String,
    status: u16,
    detail: String,
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
    async fn record_notification(&self, s: &Sent, status: &str) -> Result<(), StoreError> {
        let row = NotificationRow {
            receiver: s.receiver.clone(),
            group_key: s.group_key.clone(),
            sent_at: secs(&s.at),
            status: status.to_string(),
            escalation: u8::from(s.escalation),
            firing: s.firing.iter().cloned().collect(),
            alerts: serde_json::to_string(&s.alerts).unwrap_or_default(),
        };
        self.insert_rows("notification_log", &[row]).await
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
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let matchers: Result<Vec<Matcher>, String> = r.matchers.iter().map(|m| Matcher::parse(m)).collect();
                match matchers {
                    Ok(matchers) => Some(Silence {
                        id: r.silence_id,
                        matchers,
                        starts_at: time(r.starts_at),
                        ends_at: time(r.ends_at),
                        created_by: r.created_by,
                        comment: r.comment,
                    }),
                    Err(e) => {
                        tracing::error!(silence = %r.silence_id, error = %e, "stored silence has a bad matcher; ignored");
                        None
                    }
                }
            })
            .collect())
    }

    /// Creates or updates a silence (the latest version wins).
    async fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let row = SilenceWriteRow {
            silence_id: s.id.clone(),
            matchers: s.matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: secs(&s.starts_at),
            ends_at: secs(&s.ends_at),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            updated_at: secs(&Utc::now()),
            // Milliseconds: an expiry right after creation still wins.
            version: Utc::now().timestamp_millis().max(0) as u64,
        };
        self.insert_rows("silences", &[row]).await
    }

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError> {
        let row = ApiAuditRow {
            at: secs(&Utc::now()),
            key_name: key.into(),
            method: method.into(),
            path: path.into(),
            status,
            detail: detail.into(),
        };
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
                    r.violation_id,
                    r.asset_id,
                    r.control_id,
                    r.title,
                    r.severity,
                    r.frameworks,
                    &r.evidence,
                    time(r.opened_at),
                    labels,
                )
            })
            .collect())
    }
}

fn to_sent(rows: Vec<LastNotificationRow>) -> Vec<Sent> {
    {
        rows.into_iter()
            .map(|r| Sent {
                receiver: r.receiver,
                group_key: r.group_key,
                at: time(r.last_sent),
                firing: r.last_firing.into_iter().collect(),
                // A log row this version can't read only loses its resolve.
                alerts: serde_json::from_str(&r.last_alerts).unwrap_or_default(),
                escalation: r.last_escalation != 0,
            })
            .collect()
    }
}
