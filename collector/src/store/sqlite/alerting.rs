//! The SQLite side of [`AlertLog`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;

use super::views::{labels, latest_snapshots, lifecycles};
use super::{docs, json_list, SqliteStore};
use crate::alert::dispatch::Sent;
use crate::alert::model::Alert;
use crate::alert::mute::Silence;
use crate::store::alerting::{violation_alert, AlertLog};
use crate::store::records::{ApiAuditRow, NotificationRow, SilenceRow, SilenceWriteRow};
use crate::store::{secs, time, StoreError};

/// The last of `rows` (in write order) per (receiver, group).
fn last_per_group(rows: Vec<NotificationRow>) -> Vec<Sent> {
    let mut last: BTreeMap<(String, String), NotificationRow> = BTreeMap::new();
    for r in rows {
        last.insert((r.receiver.clone(), r.group_key.clone()), r);
    }
    last.into_values().map(NotificationRow::into_sent).collect()
}

#[async_trait]
impl AlertLog for SqliteStore {
    async fn record_notifications(&self, sent: &[(Sent, &str)]) -> Result<(), StoreError> {
        self.put(sent.iter().map(|(s, status)| NotificationRow::new(s, status)).collect()).await
    }

    async fn notification_log(&self) -> Result<Vec<Sent>, StoreError> {
        let since = i64::from(secs(&(Utc::now() - chrono::Duration::days(30))));
        self.with(move |c| Ok(last_per_group(docs::<NotificationRow>(c, "at > ?1", None, &[&since])?))).await
    }

    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<Sent>, StoreError> {
        let keys = json_list(keys);
        self.with(move |c| Ok(last_per_group(docs::<NotificationRow>(c, "subject IN (SELECT value FROM json_each(?1))", None, &[&keys])?)))
            .await
    }

    async fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let now = secs(&Utc::now());
        self.with(move |c| {
            // The latest version of each, read as the ClickHouse query reads it.
            let latest: Vec<SilenceRow> = docs::<SilenceWriteRow>(c, "1", Some("subject"), &[])?
                .into_iter()
                .filter(|s| s.ends_at > now)
                .map(|s| SilenceRow {
                    silence_id: s.silence_id,
                    matchers: s.matchers,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    created_by: s.created_by,
                    comment: s.comment,
                })
                .collect();
            Ok(latest.into_iter().filter_map(SilenceRow::into_silence).collect())
        })
        .await
    }

    async fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        self.put(vec![SilenceWriteRow::new(s, Utc::now())]).await
    }

    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError> {
        let row = ApiAuditRow::new(key, method, path, status, detail, Utc::now());
        self.put(vec![row]).await
    }

    async fn open_violation_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        self.with(|c| {
            let snapshots = latest_snapshots(c, None)?;
            Ok(lifecycles(c)?
                .into_values()
                .filter(|l| l.last_event == "opened")
                .map(|l| {
                    let v = l.first;
                    let labels = snapshots.get(&v.asset_id).map(|s| labels(&s.0)).unwrap_or_default();
                    violation_alert(
                        &v.violation_id,
                        &v.asset_id,
                        &v.control_id,
                        &v.title,
                        &v.severity,
                        &v.frameworks,
                        &v.evidence,
                        time(l.opened_at),
                        labels,
                    )
                })
                .collect())
        })
        .await
    }
}
