//! What the evidence chain reads and writes: links (written with each
//! batch, see [`super::clickhouse::ClickHouseStore::write`]), hourly roots,
//! and the stored rows of chained (or unchained) batches, as digests.

use std::collections::BTreeSet;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::clickhouse::ClickHouseStore;
use super::rows::*;
use super::{secs, time, StoreError};
use crate::evidence::verify::{StoredRoot, StoredRow};
use crate::evidence::{row_digest, LinkRow, TABLES};

#[derive(Debug, Row, Serialize, Deserialize)]
pub struct RootRow {
    pub chain_id: String,
    pub hour: u32,
    pub root: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub links: u32,
}

#[derive(Debug, Row, Serialize)]
struct RootWriteRow {
    chain_id: String,
    hour: u32,
    root: String,
    first_seq: u64,
    last_seq: u64,
    links: u32,
    computed_at: u32,
}

/// A chain's links in a period: its head.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain_id: String,
    pub links: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The last link's hash.
    pub head: String,
    pub last_at: u32,
}

#[derive(Debug, Row, Deserialize)]
struct BatchIdRow {
    batch_id: String,
}

/// The time column of each table (in [`TABLES`] order), for a period.
const TIME_COLUMNS: [&str; 7] = ["collected_at", "collected_at", "timestamp", "timestamp", "evaluated_at", "at", "at"];

impl ClickHouseStore {
    /// Chain links stored in [from, to], of every chain, in chain order.
    pub async fn evidence_links(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<LinkRow>, StoreError> {
        let (f, t) = (secs(&from), secs(&to));
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_LINKS_SQL, |q| q.bind(f).bind(t)).await
    }

    /// Per chain (or only `chain`), the links stored in [from, to] and
    /// the head.
    pub async fn evidence_heads(&self, chain: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChainHead>, StoreError> {
        let (c, f, t) = (chain.unwrap_or_default().to_string(), secs(&from), secs(&to));
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_HEADS_SQL, |q| q.bind(c.clone()).bind(c.clone()).bind(f).bind(t)).await
    }

    /// The links of `batches` (wherever in time they are).
    pub async fn evidence_links_for(&self, batches: &[String]) -> Result<Vec<LinkRow>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_LINKS_FOR_SQL, |q| q.bind(batches.to_vec())).await
    }

    /// Hourly roots of hours in [from, to].
    pub async fn evidence_roots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<StoredRoot>, StoreError> {
        let (f, t) = (secs(&from), secs(&to));
        let rows: Vec<RootRow> = self.fetch_bound(driftwatch_schemas::clickhouse::EVIDENCE_ROOTS_SQL, |q| q.bind(f).bind(t)).await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredRoot { chain_id: r.chain_id, hour: time(r.hour), root: r.root, first_seq: r.first_seq, last_seq: r.last_seq })
            .collect())
    }

    pub async fn put_root(
        &self,
        chain_id: &str,
        hour: DateTime<Utc>,
        root: String,
        first_seq: u64,
        last_seq: u64,
        links: u32,
    ) -> Result<(), StoreError> {
        let row =
            RootWriteRow { chain_id: chain_id.into(), hour: secs(&hour), root, first_seq, last_seq, links, computed_at: secs(&Utc::now()) };
        self.insert_rows("evidence_roots", &[row]).await
    }

    /// The rows of `batches`, and of every batch not in `batches` whose rows'
    /// own time falls in [from, to] (rows no link may know of), as digests.
    pub async fn evidence_rows(
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
        self.digests::<SnapshotRow>(1, &ids, &mut out, |r| format!("snapshot {} of {}", r.snapshot_id, r.asset_id)).await?;
        self.digests::<FactRow>(2, &ids, &mut out, |r| format!("fact {} of {} in {}", r.path, r.asset_id, r.snapshot_id)).await?;
        self.digests::<AuditRow>(3, &ids, &mut out, |r| format!("audit event {} of {}", r.event_id, r.asset_id)).await?;
        self.digests::<SlaRow>(4, &ids, &mut out, |r| format!("probe {} of {} at {}", r.probe_id, r.asset_id, r.timestamp)).await?;
        self.digests::<EvaluationRow>(5, &ids, &mut out, |r| {
            format!("evaluation of {} on {} at {}", r.control_id, r.asset_id, r.evaluated_at)
        })
        .await?;
        self.digests::<ViolationRow>(6, &ids, &mut out, |r| format!("violation {} {}", r.violation_id, r.event)).await?;
        self.digests::<DriftRow>(7, &ids, &mut out, |r| format!("drift {} of {} on {}", r.drift_id, r.control_id, r.asset_id)).await?;
        Ok(out)
    }

    async fn digests<T>(&self, code: u8, ids: &[String], out: &mut Vec<StoredRow>, key: impl Fn(&T) -> String) -> Result<(), StoreError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead + Serialize + BatchOf,
    {
        if ids.is_empty() {
            return Ok(());
        }
        let table = TABLES[usize::from(code) - 1];
        let sql = format!("SELECT ?fields FROM {table} WHERE has(?, batch_id)");
        let rows: Vec<T> = self.fetch_bound(&sql, |q| q.bind(ids.to_vec())).await?;
        out.extend(rows.iter().map(|r| StoredRow { table: code, batch_id: r.batch_id().to_string(), digest: row_digest(r), key: key(r) }));
        Ok(())
    }
}

/// Rows that carry their batch's id.
pub trait BatchOf {
    fn batch_id(&self) -> &str;
}

macro_rules! batch_of {
    ($($t:ty),*) => { $(impl BatchOf for $t { fn batch_id(&self) -> &str { &self.batch_id } })* };
}
batch_of!(SnapshotRow, FactRow, AuditRow, SlaRow, EvaluationRow, ViolationRow, DriftRow);
