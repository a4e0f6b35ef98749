//! The SQLite side of [`Retention`]: the same monthly plan as ClickHouse's
//! partitions, over the rows' months.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::retention::{plan, Expired, Retention, RetentionConfig};
use crate::store::StoreError;

const MONTH: &str = "strftime('%Y%m', at, 'unixepoch')";

#[async_trait]
impl Retention for SqliteStore {
    async fn retention_plan(&self, cfg: &RetentionConfig, now: DateTime<Utc>) -> Result<Vec<Expired>, StoreError> {
        let parts: Vec<(String, String, u64)> = self
            .with(|c| {
                let mut stmt = c.prepare_cached(&format!("SELECT tbl, {MONTH}, count(*) FROM rows GROUP BY 1, 2"))?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))?;
                rows.collect()
            })
            .await?;
        Ok(plan(&parts, &cfg.effective(), now))
    }

    async fn drop_partitions(&self, expired: &[Expired]) -> Result<(), StoreError> {
        let expired = expired.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            for e in &expired {
                let n = tx.execute(&format!("DELETE FROM rows WHERE tbl = ?1 AND {MONTH} = ?2"), [&e.table, &e.partition])?;
                tracing::info!(table = %e.table, month = %e.partition, rows = n, "retention: month deleted");
            }
            tx.commit()
        })
        .await
    }
}
