//! The SQLite side of [`WaiverLog`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::views::{labels, latest_snapshots};
use super::{docs, per_subject, SqliteStore};
use crate::store::records::WaiverRow;
use crate::store::rows::EvaluationRow;
use crate::store::values::Status;
use crate::store::waivers::{SilentResult, WaiverLog};
use crate::store::{secs, time, StoreError};

/// When each asset last sent a snapshot or heartbeat (seconds).
pub(super) fn last_seen(c: &rusqlite::Connection, heartbeats_only: bool) -> rusqlite::Result<BTreeMap<String, u32>> {
    let probes = if heartbeats_only { "AND subject = 'heartbeat'" } else { "" };
    let sql = format!(
        "SELECT asset_id, '', max(seen) FROM (\
           SELECT asset_id, max(ord) / 1000 AS seen FROM rows WHERE tbl = 'snapshots' GROUP BY asset_id \
           UNION ALL \
           SELECT asset_id, max(at) AS seen FROM rows WHERE tbl = 'sla_measurements' {probes} GROUP BY asset_id\
         ) GROUP BY asset_id"
    );
    Ok(per_subject(c, &sql, &[])?.into_iter().map(|(a, _, t)| (a, t.clamp(0, i64::from(u32::MAX)) as u32)).collect())
}

#[async_trait]
impl WaiverLog for SqliteStore {
    async fn put_waiver(&self, row: &WaiverRow) -> Result<(), StoreError> {
        self.put(vec![row.clone()]).await
    }

    async fn waivers(&self) -> Result<Vec<WaiverRow>, StoreError> {
        self.with(|c| {
            let mut rows = docs::<WaiverRow>(c, "1", Some("subject"), &[])?;
            rows.sort_by(|a, b| a.waiver_id.cmp(&b.waiver_id));
            Ok(rows)
        })
        .await
    }

    async fn asset_labels(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
        let week_ago = secs(&(Utc::now() - chrono::Duration::days(7)));
        self.with(move |c| {
            Ok(latest_snapshots(c, None)?
                .into_iter()
                .filter(|(_, (s, _))| s.received_at >= week_ago)
                .map(|(a, (s, _))| (a, labels(&s)))
                .collect())
        })
        .await
    }

    async fn silent_results(&self, since: DateTime<Utc>) -> Result<Vec<SilentResult>, StoreError> {
        let since = secs(&since);
        self.with(move |c| {
            let silent: BTreeMap<String, u32> = last_seen(c, true)?.into_iter().filter(|(_, seen)| *seen < since).collect();
            let mut out = Vec::new();
            for (asset, seen) in silent {
                let mut latest = docs::<EvaluationRow>(c, "asset_id = ?1", Some("subject"), &[&asset])?;
                super::views::confirm_latest(c, &mut latest, Some(&asset))?;
                for e in latest {
                    let Some(status) = Status::parse(&e.status) else { continue };
                    if matches!(status, Status::Unknown | Status::NotApplicable) {
                        continue;
                    }
                    out.push(SilentResult {
                        asset_id: e.asset_id,
                        control_id: e.control_id,
                        status,
                        last_evaluated: time(e.evaluated_at),
                        last_seen: time(seen),
                    });
                }
            }
            Ok(out)
        })
        .await
    }
}
