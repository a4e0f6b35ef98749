//! The ClickHouse side of [`WaiverLog`]: waivers (every version kept; the
//! latest wins), assets' labels, results of silent assets.

use std::collections::BTreeMap;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::records::WaiverRow;
use crate::store::values::Status;
use crate::store::waivers::{SilentResult, WaiverLog};
use crate::store::{secs, time, StoreError};

/// A version of a waiver, as written and as read back (latest version).
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
    async fn put_waiver(&self, row: &WaiverRow) -> Result<(), StoreError> {
        self.insert_rows("waivers", std::slice::from_ref(row)).await
    }

    async fn waivers(&self) -> Result<Vec<WaiverRow>, StoreError> {
        self.fetch(driftwatch_schemas::clickhouse::WAIVERS_SQL).await
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
