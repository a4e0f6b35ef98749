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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::store::rows::SlaRow;
    use crate::store::Streams;

    fn probe(at: DateTime<Utc>) -> SlaRow {
        SlaRow {
            asset_id: "a".into(),
            probe_id: "p".into(),
            target: "t".into(),
            kind: "http".into(),
            timestamp: crate::store::secs(&at),
            timestamp_ms: 0,
            success: 1,
            latency_us: 1,
            status_code: None,
            error: String::new(),
            cpu_percent: None,
            memory_used_bytes: None,
            memory_total_bytes: None,
            disk_used_percent: None,
            load1: None,
            batch_id: "b".into(),
            cert_days_left: None,
            spool_depth: None,
            spool_bytes: None,
            agent_dropped: None,
            last_sent: None,
        }
    }

    #[tokio::test]
    async fn months_past_retention_are_deleted_and_the_rest_kept() {
        let (_dir, s) = crate::store::sqlite::tests::store();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let mut b = crate::store::Batch::new();
        b.sla = vec![
            probe(Utc.with_ymd_and_hms(2026, 7, 10, 0, 0, 0).unwrap()),
            probe(Utc.with_ymd_and_hms(2026, 7, 20, 0, 0, 0).unwrap()),
            probe(Utc.with_ymd_and_hms(2026, 8, 30, 0, 0, 0).unwrap()),
        ];
        s.write(&b).await.unwrap();
        let plan = s.retention_plan(&RetentionConfig::default(), now).await.unwrap();
        // Raw probe results keep 90 days: July is over, August is not.
        assert_eq!(
            plan.iter().map(|e| (e.table.as_str(), e.partition.as_str(), e.rows)).collect::<Vec<_>>(),
            vec![("sla_measurements", "202607", 2)]
        );
        s.drop_partitions(&plan).await.unwrap();
        assert!(s.retention_plan(&RetentionConfig::default(), now).await.unwrap().is_empty());
        let left: i64 = s.with(|c| c.query_row("SELECT count(*) FROM rows", [], |r| r.get(0))).await.unwrap();
        assert_eq!(left, 1);
    }
}
