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
        let parts: Vec<(String, String, u64)> =
            rows.into_iter().filter_map(|r| Some((logical_table(&r.table, self.cluster.as_deref())?, r.partition, r.rows))).collect();
        Ok(plan(&parts, &cfg.effective(), now))
    }

    async fn drop_partitions(&self, expired: &[Expired]) -> Result<(), StoreError> {
        for e in expired {
            self.execute_bound(&drop_statement(e, self.cluster.as_deref()), |q| q).await?;
            tracing::info!(table = %e.table, partition = %e.partition, rows = e.rows, "retention: partition dropped");
        }
        Ok(())
    }
}

/// The table retention knows a stored table as: itself on a single server;
/// on a cluster, the `_local` table's name without the suffix (the
/// Distributed table hold no parts), other tables not at all.
fn logical_table(stored: &str, cluster: Option<&str>) -> Option<String> {
    match cluster {
        None => Some(stored.to_string()),
        Some(_) => stored.strip_suffix("_local").map(String::from),
    }
}

/// The statement that drops an expired month: of the table, or on a
/// cluster of its `_local` table on every node. The table is one the plan
/// knows, the month a YYYYMM number, the cluster's name quoted.
fn drop_statement(e: &Expired, cluster: Option<&str>) -> String {
    let ym: u32 = e.partition.parse().unwrap_or(0);
    match cluster {
        None => format!("ALTER TABLE {} DROP PARTITION {ym}", e.table),
        Some(c) => format!("ALTER TABLE {}_local ON CLUSTER `{}` DROP PARTITION {ym}", e.table, c.replace('`', "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cluster_the_local_tables_are_dropped_on_every_node() {
        let e = Expired { table: "sla_measurements".into(), partition: "202601".into(), rows: 3, retention_days: 90 };
        assert_eq!(drop_statement(&e, None), "ALTER TABLE sla_measurements DROP PARTITION 202601");
        assert_eq!(
            drop_statement(&e, Some("driftwatch")),
            "ALTER TABLE sla_measurements_local ON CLUSTER `driftwatch` DROP PARTITION 202601"
        );
        assert_eq!(logical_table("sla_measurements_local", Some("driftwatch")).as_deref(), Some("sla_measurements"));
        assert_eq!(logical_table("sla_measurements", Some("driftwatch")), None, "a Distributed table is not dropped from");
        assert_eq!(logical_table("sla_measurements", None).as_deref(), Some("sla_measurements"));
    }
}
