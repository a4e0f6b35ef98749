//! The ClickHouse side of [`WaiverLog`]: waivers (every version kept; the
//! latest wins), assets' labels, results of silent assets.

use std::collections::BTreeMap;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::eval::Status;
use crate::policy::Severity;
use crate::store::waivers::{SilentResult, WaiverLog};
use crate::store::{secs, time, StoreError};
use crate::waiver::{Scope, Waiver, WaiverSpec};

/// A version of a waiver, as written and as read back (latest version).
#[derive(Debug, Row, Serialize, Deserialize)]
struct WaiverRow {
    waiver_id: String,
    control_id: String,
    requirement: String,
    scope: String,
    justification: String,
    approver: String,
    risk: String,
    ticket: String,
    starts_at: u32,
    expires_at: u32,
    revoked_at: u32,
    revoked_by: String,
    created_by: String,
    source: String,
    updated_at: u32,
    version: u64,
}

#[derive(Debug, Row, Deserialize)]
struct LabelsRow {
    asset_id: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
}

#[derive(Debug, Row, Deserialize)]
struct SilentRow {
    asset_id: String,
    control_id: String,
    status: String,
    last_evaluated: u32,
    last_seen: u32,
}

#[async_trait]
impl WaiverLog for ClickHouseStore {
    /// Writes a new version of a waiver (the latest version wins).
    async fn put_waiver(&self, w: &Waiver) -> Result<(), StoreError> {
        let now = Utc::now();
        let row = WaiverRow {
            waiver_id: w.spec.id.clone(),
            control_id: w.spec.control.clone().unwrap_or_default(),
            requirement: w.spec.requirement.clone().unwrap_or_default(),
            scope: serde_json::to_string(&w.spec.scope).unwrap_or_default(),
            justification: w.spec.justification.clone(),
            approver: w.spec.approver.clone(),
            risk: w.spec.risk.as_str().into(),
            ticket: w.spec.ticket.clone(),
            starts_at: w.spec.starts.map_or(0, |s| secs(&s)),
            expires_at: secs(&w.spec.expires),
            revoked_at: w.revoked_at.map_or(0, |r| secs(&r)),
            revoked_by: w.revoked_by.clone(),
            created_by: w.created_by.clone(),
            source: w.source.clone(),
            updated_at: secs(&now),
            // Microseconds: a revocation right after creation still wins.
            version: now.timestamp_micros().max(0) as u64,
        };
        self.insert_rows("waivers", &[row]).await
    }

    /// Every waiver (revoked and expired ones too). A stored row this
    /// version cannot read is skipped with an error log.
    async fn waivers(&self) -> Result<Vec<Waiver>, StoreError> {
        let rows: Vec<WaiverRow> = self.fetch(driftwatch_schemas::clickhouse::WAIVERS_SQL).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let scope: Scope = match serde_json::from_str(&r.scope) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(waiver = %r.waiver_id, error = %e, "stored waiver has an unreadable scope; ignored");
                        return None;
                    }
                };
                let risk: Severity = serde_json::from_value(serde_json::Value::String(r.risk.clone())).unwrap_or(Severity::High);
                Some(Waiver {
                    spec: WaiverSpec {
                        id: r.waiver_id,
                        control: Some(r.control_id).filter(|c| !c.is_empty()),
                        requirement: Some(r.requirement).filter(|c| !c.is_empty()),
                        scope,
                        justification: r.justification,
                        approver: r.approver,
                        risk,
                        ticket: r.ticket,
                        starts: (r.starts_at > 0).then(|| time(r.starts_at)),
                        expires: time(r.expires_at),
                    },
                    source: r.source,
                    created_by: r.created_by,
                    revoked_at: (r.revoked_at > 0).then(|| time(r.revoked_at)),
                    revoked_by: r.revoked_by,
                })
            })
            .collect())
    }

    /// The latest labels of every asset seen in the past week.
    async fn asset_labels(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
        let rows: Vec<LabelsRow> = self.fetch(driftwatch_schemas::clickhouse::ASSET_LABELS_SQL).await?;
        Ok(rows.into_iter().map(|r| (r.asset_id, r.label_keys.into_iter().zip(r.label_values).collect())).collect())
    }

    /// The latest results, neither unknown nor not applicable, of assets
    /// with no snapshot and no heartbeat since `since`.
    async fn silent_results(&self, since: DateTime<Utc>) -> Result<Vec<SilentResult>, StoreError> {
        let s = secs(&since);
        let rows: Vec<SilentRow> = self.fetch_bound(driftwatch_schemas::clickhouse::SILENT_RESULTS_SQL, |q| q.bind(s).bind(s)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(SilentResult {
                    status: Status::parse(&r.status)?,
                    asset_id: r.asset_id,
                    control_id: r.control_id,
                    last_evaluated: time(r.last_evaluated),
                    last_seen: time(r.last_seen),
                })
            })
            .collect())
    }
}
