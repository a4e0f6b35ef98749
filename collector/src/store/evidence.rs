//! What the evidence chain reads and writes: links (written with each
//! batch, see [`super::Streams::write`]), hourly roots, and the stored rows
//! of chained (or unchained) batches, as digests.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::digest::{row_digest, RowDigest};
use super::rows::*;
use super::StoreError;

/// The evidence chain's reads and writes.
#[async_trait]
pub trait EvidenceStore {
    /// Chain links stored in [from, to], of every chain, in chain order.
    async fn evidence_links(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<LinkRow>, StoreError>;

    /// Per chain (or only `chain`), the links stored in [from, to] and
    /// the head.
    async fn evidence_heads(&self, chain: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChainHead>, StoreError>;

    /// The links of `batches` (wherever in time they are).
    async fn evidence_links_for(&self, batches: &[String]) -> Result<Vec<LinkRow>, StoreError>;

    /// Hourly roots of hours in [from, to].
    async fn evidence_roots(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<StoredRoot>, StoreError>;

    /// Records the root of a chain's hour.
    async fn put_root(
        &self,
        chain_id: &str,
        hour: DateTime<Utc>,
        root: String,
        first_seq: u64,
        last_seq: u64,
        links: u32,
    ) -> Result<(), StoreError>;

    /// The rows of `batches`, and of every batch not in `batches` whose rows'
    /// own time falls in [from, to] (rows no link may know of), as digests.
    async fn evidence_rows(&self, batches: &BTreeSet<String>, from: DateTime<Utc>, to: DateTime<Utc>)
        -> Result<Vec<StoredRow>, StoreError>;
}

/// A chain's links in a period: its head.
#[derive(Debug, Clone, ::clickhouse::Row, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain_id: String,
    pub links: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The last link's hash.
    pub head: String,
    pub last_at: u32,
}

/// The time column of each table (in [`crate::evidence::TABLES`] order),
/// for a period.
pub(crate) const TIME_COLUMNS: [&str; super::digest::TABLE_COUNT] =
    ["collected_at", "collected_at", "timestamp", "timestamp", "evaluated_at", "at", "at", "collected_at"];

/// A row of a chained table: its batch and how a verifier names it.
pub trait Chained: Serialize + Sized {
    /// Its code in [`crate::evidence::TABLES`] (1-based).
    const TABLE: u8;
    fn batch_id(&self) -> &str;
    fn key(&self) -> String;

    /// The row as the verifier compares it.
    fn stored(&self) -> StoredRow {
        StoredRow { table: Self::TABLE, batch_id: self.batch_id().to_string(), digest: row_digest(self), key: self.key() }
    }
}

macro_rules! chained {
    ($($t:ty = $code:literal, |$r:ident| $key:expr);* $(;)?) => {
        $(impl Chained for $t {
            const TABLE: u8 = $code;
            fn batch_id(&self) -> &str { &self.batch_id }
            fn key(&self) -> String { let $r = self; $key }
        })*
    };
}
chained! {
    SnapshotRow = 1, |r| format!("snapshot {} of {}", r.snapshot_id, r.asset_id);
    FactRow = 2, |r| format!("fact {} of {} in {}", r.path, r.asset_id, r.snapshot_id);
    AuditRow = 3, |r| format!("audit event {} of {}", r.event_id, r.asset_id);
    SlaRow = 4, |r| format!("probe {} of {} at {}", r.probe_id, r.asset_id, r.timestamp);
    EvaluationRow = 5, |r| format!("evaluation of {} on {} at {}", r.control_id, r.asset_id, r.evaluated_at);
    ViolationRow = 6, |r| format!("violation {} {}", r.violation_id, r.event);
    DriftRow = 7, |r| format!("drift {} of {} on {}", r.drift_id, r.control_id, r.asset_id);
    ConfirmationRow = 8, |r| format!("confirmations of snapshot {} of {}", r.snapshot_id, r.asset_id);
}

/// One link, as stored in `evidence_chain`.
#[derive(Debug, Clone, PartialEq, ::clickhouse::Row, Serialize, Deserialize)]
pub struct LinkRow {
    pub chain_id: String,
    pub seq: u64,
    pub batch_id: String,
    pub at: u32,
    pub prev_hash: String,
    pub hash: String,
    pub row_tables: Vec<u8>,
    pub row_digests: Vec<RowDigest>,
}

/// A stored row, as verification sees it.
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Table code (1-based index into [`TABLES`](super::digest::TABLES)).
    pub table: u8,
    pub batch_id: String,
    pub digest: RowDigest,
    /// A few identifying fields, for the report.
    pub key: String,
}

/// A stored hourly root.
#[derive(Debug, Clone)]
pub struct StoredRoot {
    pub chain_id: String,
    pub hour: chrono::DateTime<chrono::Utc>,
    pub root: String,
    pub first_seq: u64,
    pub last_seq: u64,
}
