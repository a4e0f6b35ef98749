//! The SQLite side of [`AlertLog`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::Utc;

use super::views::{labels, latest_snapshots, lifecycles};
use super::{docs, json_list, SqliteStore};
use crate::store::alerting::{AlertLog, OpenViolation};
use crate::store::records::{ApiAuditRow, NotificationRow, SilenceRow, SilenceWriteRow};
use crate::store::{secs, time, StoreError};

/// The last of `rows` (in write order) per (receiver, group).
fn last_per_group(rows: Vec<NotificationRow>) -> Vec<NotificationRow> {
    let mut last: BTreeMap<(String, String), NotificationRow> = BTreeMap::new();
    for r in rows {
        last.insert((r.receiver.clone(), r.group_key.clone()), r);
    }
    last.into_values().collect()
}

#[async_trait]
impl AlertLog for SqliteStore {
    async fn record_notifications(&self, rows: &[NotificationRow]) -> Result<(), StoreError> {
        self.put(rows.to_vec()).await
    }

    async fn notification_log(&self) -> Result<Vec<NotificationRow>, StoreError> {
        let since = i64::from(secs(&(Utc::now() - chrono::Duration::days(30))));
        self.with(move |c| Ok(last_per_group(docs::<NotificationRow>(c, "at > ?1", None, &[&since])?))).await
    }

    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<NotificationRow>, StoreError> {
        let keys = json_list(keys);
        self.with(move |c| Ok(last_per_group(docs::<NotificationRow>(c, "subject IN (SELECT value FROM json_each(?1))", None, &[&keys])?)))
            .await
    }

    async fn silences(&self) -> Result<Vec<SilenceRow>, StoreError> {
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
            Ok(latest)
        })
        .await
    }

    async fn put_silence(&self, row: &SilenceWriteRow) -> Result<(), StoreError> {
        self.put(vec![row.clone()]).await
    }

    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError> {
        let row = ApiAuditRow::new(key, method, path, status, detail, Utc::now());
        self.put(vec![row]).await
    }

    async fn open_violations(&self) -> Result<Vec<OpenViolation>, StoreError> {
        self.with(|c| {
            let snapshots = latest_snapshots(c, None)?;
            Ok(lifecycles(c)?
                .into_values()
                .filter(|l| l.last_event == "opened")
                .map(|l| {
                    let v = l.first;
                    OpenViolation {
                        labels: snapshots.get(&v.asset_id).map(|s| labels(&s.0)).unwrap_or_default(),
                        violation_id: v.violation_id,
                        asset_id: v.asset_id,
                        control_id: v.control_id,
                        title: v.title,
                        severity: v.severity,
                        frameworks: v.frameworks,
                        evidence: v.evidence,
                        opened_at: time(l.opened_at),
                    }
                })
                .collect())
        })
        .await
    }
}
