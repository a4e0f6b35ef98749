//! The ClickHouse side of [`Retention`]: whole monthly partitions, as
//! `system.parts` lists them, dropped.

use ::clickhouse::Row;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::ClickHouseStore;
use crate::store::retention::{plan, Expired, Retention, RetentionConfig};
use crate::store::StoreError;

#[derive(Debug, Row, Deserialize)]
struct PartRow {
    table: String,
    partition: String,
    rows: u64,
}

#[async_trait]
impl Retention for ClickHouseStore {
    async fn retention_plan(&self, cfg: &RetentionConfig, now: DateTime<Utc>) -> Result<Vec<Expired>, StoreError> {
        let rows: Vec<PartRow> = self
            .fetch(
                "SELECT table, partition, sum(rows) AS rows FROM system.parts \
                 WHERE active AND database = currentDatabase() AND engine LIKE '%MergeTree' GROUP BY table, partition",
            )
            .await?;
        let parts: Vec<(String, String, u64)> = rows.into_iter().map(|r| (r.table, r.partition, r.rows)).collect();
        Ok(plan(&parts, &cfg.effective(), now))
    }

    async fn drop_partitions(&self, expired: &[Expired]) -> Result<(), StoreError> {
        for e in expired {
            // Both are validated: a known table name and a YYYYMM number.
            let ym: u32 = e.partition.parse().unwrap_or(0);
            self.execute_bound(&format!("ALTER TABLE {} DROP PARTITION {ym}", e.table), |q| q).await?;
            tracing::info!(table = %e.table, partition = %e.partition, rows = e.rows, "retention: partition dropped");
        }
        Ok(())
    }
}
