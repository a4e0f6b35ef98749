//! Storage of everything the collector receives and derives.
//!
//! [`Batch`] is the unit of writing: the collector commits Kafka offsets
//! only after the store acknowledged the whole batch. [`Store`] is the
//! interface every room reads and writes through; [`clickhouse`] is the
//! distributed-mode store.

pub mod alerting;
pub mod clickhouse;
pub mod evidence;
pub mod keys;
pub mod records;
pub mod retention;
pub mod rows;
pub mod slo;
pub mod sqlite;
pub mod views;
pub mod waivers;

use chrono::{DateTime, Utc};
use driftwatch_schemas::{AuditEvent, ConfigSnapshot, SlaMeasurement};

use crate::eval::drift::DriftEvent;
use crate::eval::{Evaluation, Transition};
use rows::*;

pub use alerting::AlertLog;
pub use evidence::EvidenceStore;
pub use keys::KeyRing;
pub use retention::Retention;
pub use slo::SloStore;
pub use views::Views;
pub use waivers::WaiverLog;

use crate::score::recorder::ScoreRow;

/// Rows for every table, gathered from one consumer batch.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub batch_id: String,
    pub snapshots: Vec<SnapshotRow>,
    pub facts: Vec<FactRow>,
    pub audit: Vec<AuditRow>,
    pub sla: Vec<SlaRow>,
    pub evaluations: Vec<EvaluationRow>,
    pub violations: Vec<ViolationRow>,
    pub drifts: Vec<DriftRow>,
    /// The batch's link in its collector's evidence chain (written last).
    pub link: Option<crate::evidence::LinkRow>,
}

impl Batch {
    pub fn new() -> Self {
        Batch { batch_id: uuid::Uuid::now_v7().to_string(), ..Default::default() }
    }

    pub fn add_snapshot(&mut self, s: &ConfigSnapshot, now: &DateTime<Utc>) {
        let (snap, facts) = snapshot_rows(s, &self.batch_id, now);
        self.snapshots.push(snap);
        self.facts.extend(facts);
    }

    pub fn add_audit(&mut self, a: &AuditEvent) {
        self.audit.push(audit_row(a, &self.batch_id));
    }

    pub fn add_sla(&mut self, m: &SlaMeasurement) {
        self.sla.push(sla_row(m, &self.batch_id));
    }

    pub fn add_evaluations(&mut self, evs: Vec<Evaluation>, transitions: &[Transition]) {
        self.evaluations.extend(evs.into_iter().map(|e| evaluation_row(e, &self.batch_id)));
        self.violations.extend(transitions.iter().map(|t| violation_row(t, &self.batch_id)));
    }

    pub fn add_drifts(&mut self, drifts: &[DriftEvent]) {
        self.drifts.extend(drifts.iter().map(|d| drift_row(d, &self.batch_id)));
    }

    /// Total rows in the batch.
    pub fn rows(&self) -> usize {
        self.snapshots.len()
            + self.facts.len()
            + self.audit.len()
            + self.sla.len()
            + self.evaluations.len()
            + self.violations.len()
            + self.drifts.len()
    }
}

/// Seconds since the epoch, as ClickHouse `DateTime` columns take them.
pub fn secs(t: &DateTime<Utc>) -> u32 {
    t.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// A ClickHouse `DateTime` (0: the epoch).
pub fn time(s: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.timestamp_opt(i64::from(s), 0).single().unwrap_or_default()
}

/// Why the store failed; the caller retries the same batch.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url}: {source}")]
    ClickHouse { url: String, source: ::clickhouse::error::Error },
    #[error("migration {name}: {message}")]
    Migration { name: String, message: String },
    #[error("SQLite database {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "SQLite database {path} has layout {found}; this version reads layout {supported} and older: use a newer driftwatch-collector"
    )]
    Layout { path: String, found: i64, supported: i64 },
    #[error("store task failed: {0}")]
    Task(String),
}

/// Everything the collector keeps, whatever keeps it: ClickHouse in the
/// distributed mode ([`clickhouse`]), SQLite in the single-node mode
/// ([`sqlite`]). Each part is the interface of one room's needs.
pub trait Store: Streams + Views + AlertLog + WaiverLog + SloStore + EvidenceStore + KeyRing + Retention + Send + Sync {}

impl<T: Streams + Views + AlertLog + WaiverLog + SloStore + EvidenceStore + KeyRing + Retention + Send + Sync> Store for T {}

/// The store, shared by every task of the collector.
pub type SharedStore = std::sync::Arc<dyn Store>;

/// Writes of the pipeline and the periodic recorders.
#[async_trait::async_trait]
pub trait Streams {
    /// Writes a batch's rows: every table but the evidence chain. Returns
    /// only when every table took its rows; a batch written twice is
    /// stored once (rows have deterministic keys).
    async fn write_rows(&self, b: &Batch) -> Result<(), StoreError>;

    /// Writes a batch's link in the evidence chain, once its rows are
    /// stored (a link never precedes the rows it seals).
    async fn write_link(&self, link: &crate::evidence::LinkRow) -> Result<(), StoreError>;

    /// Writes a batch: its rows, then its link.
    async fn write(&self, b: &Batch) -> Result<(), StoreError> {
        self.write_rows(b).await?;
        match &b.link {
            Some(link) => self.write_link(link).await,
            None => Ok(()),
        }
    }

    /// Writes a recording of compliance scores.
    async fn put_scores(&self, rows: &[ScoreRow]) -> Result<(), StoreError>;

    /// Writes the catalog of the controls in force.
    async fn put_controls(&self, rows: &[rows::ControlRow]) -> Result<(), StoreError>;

    /// Whether the store answers (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where the data lives, for logs and `--help`-like output.
    fn location(&self) -> String;
}

/// The store and every part of its interface, for the rooms that use it
/// (`use crate::store::prelude::*`: methods of a part need it in scope).
pub mod prelude {
    pub use super::{AlertLog, EvidenceStore, KeyRing, Retention, SharedStore, SloStore, Store, Streams, Views, WaiverLog};
}

/// Opens the configured store: connects to ClickHouse (and migrates it,
/// unless off) or opens the SQLite file.
pub async fn open(cfg: &crate::config::CollectorConfig) -> Result<SharedStore, StoreError> {
    Ok(match cfg.store.kind {
        crate::config::StoreKind::Clickhouse => std::sync::Arc::new(clickhouse::ClickHouseStore::connect(&cfg.clickhouse).await?),
        crate::config::StoreKind::Sqlite => std::sync::Arc::new(sqlite::SqliteStore::open(&cfg.store.sqlite_path)?),
    })
}
