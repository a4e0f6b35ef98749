//! The ClickHouse side of [`EvidenceStore`].

use std::collections::BTreeSet;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::digest::TABLES;
use crate::store::evidence::LinkRow;
use crate::store::evidence::{ChainHead, Chained, EvidenceStore, TIME_COLUMNS};
use crate::store::evidence::{StoredRoot, StoredRow};
use crate::store::records::{RootRow, RootWriteRow};
use crate::store::rows::*;
use crate::store::{secs, StoreError};

#[derive(Debug, Row, Deserialize)]
struct BatchIdRow {
    batch_id: String,
}

#[async_trait]
impl EvidenceStore for ClickHouseStore {
    /// Chain links stored in [from, to], of every chain, in chain order.
    async fn evidence_links(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<LinkRow>, StoreError> {
        let (f, t) = (secs(&from), secs(&to));
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_LINKS_SQL, |q| q.bind(f).bind(t)).await
    }

    /// Per chain (or only `chain`), the links stored in [from, to] and
    /// the head.
    async fn evidence_heads(&self, chain: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChainHead>, StoreError> {
        let (c, f, t) = (chain.unwrap_or_default().to_string(), secs(&from), secs(&to));
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_HEADS_SQL, |q| q.bind(c.clone()).bind(c.clone()).bind(f).bind(t)).await
    }

    /// The links of `batches` (wherever in time they are).
    async fn evidence_links_for(&self, batches: &[String]) -> Result<Vec<LinkRow>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_LINKS_FOR_SQL, |q| q.bind(batches.to_vec())).await
    }

    /// Hourly roots of hours in [from, to].
    async fn evidence_roots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<StoredRoot>, StoreError> {
        let (f, t) = (secs(&from), secs(&to));
        let rows: Vec<RootRow> = self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_ROOTS_SQL, |q| q.bind(f).bind(t)).await?;
        Ok(rows.into_iter().map(RootRow::into_stored).collect())
    }

    async fn put_root(
        &self,
        chain_id: &str,
        hour: DateTime<Utc>,
        root: String,
        first_seq: u64,
        last_seq: u64,
        links: u32,
    ) -> Result<(), StoreError> {
        let row = RootWriteRow::new(chain_id, hour, root, (first_seq, last_seq), links, Utc::now());
        self.insert_rows("evidence_roots", &[row]).await
    }

    /// The rows of `batches`, and of every batch not in `batches` whose rows'
    /// own time falls in [from, to] (rows no link may know of), as digests.
    async fn evidence_rows(
        &self,
        batches: &BTreeSet<String>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let (f, t) = (secs(&from), secs(&to));
        let mut ids: Vec<String> = batches.iter().cloned().collect();
        for (table, col) in TABLES.iter().zip(TIME_COLUMNS) {
            let sql = format!("SELECT DISTINCT batch_id FROM {table} WHERE {col} >= toDateTime(?) AND {col} <= toDateTime(?)");
            let seen: Vec<BatchIdRow> = self.fetch_bound(&sql, |q| q.bind(f).bind(t)).await?;
            ids.extend(seen.into_iter().map(|r| r.batch_id).filter(|b| !batches.contains(b)));
        }
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        self.digests::<SnapshotRow>(&ids, &mut out).await?;
        self.digests::<FactRow>(&ids, &mut out).await?;
        self.digests::<AuditRow>(&ids, &mut out).await?;
        self.digests::<SlaRow>(&ids, &mut out).await?;
        self.digests::<EvaluationRow>(&ids, &mut out).await?;
        self.digests::<ViolationRow>(&ids, &mut out).await?;
        self.digests::<DriftRow>(&ids, &mut out).await?;
        self.digests::<ConfirmationRow>(&ids, &mut out).await?;
        Ok(out)
    }
}

impl ClickHouseStore {
    async fn digests<T>(&self, ids: &[String], out: &mut Vec<StoredRow>) -> Result<(), StoreError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead + Chained,
    {
        if ids.is_empty() {
            return Ok(());
        }
        let table = TABLES[usize::from(T::TABLE) - 1];
        let sql = format!("SELECT ?fields FROM {table} WHERE has(?, batch_id)");
        let rows: Vec<T> = self.fetch_bound(&sql, |q| q.bind(ids.to_vec())).await?;
        out.extend(rows.iter().map(Chained::stored));
        Ok(())
    }
}
