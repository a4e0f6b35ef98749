//! Storage of everything the collector receives and derives.
//!
//! [`Batch`] is the unit of writing: the collector commits Kafka offsets
//! only after the store acknowledged the whole batch. [`Store`] is the
//! interface every room reads and writes through; [`clickhouse`] is the
//! distributed-mode store.

pub mod alerting;
pub mod attestations;
mod canonical;
pub mod clickhouse;
pub mod config;
pub mod digest;
pub mod evidence;
pub mod gaps;
pub mod keys;
pub mod records;
pub mod retention;
pub mod rows;
pub mod slo;
pub mod sqlite;
pub mod values;
pub mod views;
pub mod waivers;

use chrono::{DateTime, Utc};
use driftwatch_schemas::{AuditEvent, ConfigSnapshot, SlaMeasurement};

use rows::*;

pub use alerting::AlertLog;
pub use attestations::AttestationLog;
pub use evidence::EvidenceStore;
pub use gaps::GapLog;
pub use keys::KeyRing;
pub use retention::Retention;
pub use slo::SloStore;
pub use views::Views;
pub use waivers::WaiverLog;

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
    /// What snapshots confirmed instead of storing again (issue 31).
    pub confirmations: Vec<ConfirmationRow>,
    /// The batch's link in its collector's evidence chain (written last).
    pub link: Option<evidence::LinkRow>,
    /// Which rows each record brought, in the order the records were
    /// processed (see [`Self::part`]); rows of no record are the
    /// collector's own (ticks, reloads, waivers).
    pub records: Vec<RecordRows>,
}

/// How many rows each table held: snapshots, facts, audit, sla,
/// evaluations, violations, drifts, confirmations (the order of
/// [`digest::TABLES`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts(pub [usize; digest::TABLE_COUNT]);

/// The rows one record brought into a batch: in each table, those from
/// `start` up to `end`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordRows {
    pub start: RowCounts,
    pub end: RowCounts,
}

impl Batch {
    pub fn new() -> Self {
        Batch { batch_id: uuid::Uuid::now_v7().to_string(), ..Default::default() }
    }

    /// A snapshot's rows: its row and every fact.
    pub fn add_snapshot(&mut self, s: &ConfigSnapshot, now: &DateTime<Utc>) -> &mut SnapshotRow {
        self.add_snapshot_facts(s, now, None)
    }

    /// A snapshot's row and its facts at `only` (all for `None`); the row
    /// is returned to be completed by the caller.
    pub fn add_snapshot_facts(&mut self, s: &ConfigSnapshot, now: &DateTime<Utc>, only: Option<&[usize]>) -> &mut SnapshotRow {
        let (snap, facts) = snapshot_rows(s, &self.batch_id, now, only);
        self.facts.extend(facts);
        self.snapshots.push(snap);
        let last = self.snapshots.len() - 1;
        &mut self.snapshots[last]
    }

    pub fn add_audit(&mut self, a: &AuditEvent) {
        self.audit.push(audit_row(a, &self.batch_id));
    }

    pub fn add_sla(&mut self, m: &SlaMeasurement) {
        self.sla.push(sla_row(m, &self.batch_id));
    }

    /// How many rows each table holds now (drift rows are added at the
    /// flush; `drifts` counts the drift events waiting for it).
    pub fn counts(&self, drifts: usize) -> RowCounts {
        RowCounts([
            self.snapshots.len(),
            self.facts.len(),
            self.audit.len(),
            self.sla.len(),
            self.evaluations.len(),
            self.violations.len(),
            self.drifts.len() + drifts,
            self.confirmations.len(),
        ])
    }

    /// A batch (same id) of the rows the records at positions `records`
    /// brought, or, for `None`, of the rows no record brought.
    pub fn part(&self, records: Option<std::ops::Range<usize>>) -> Batch {
        let spans = |t: usize, len: usize| -> Vec<std::ops::Range<usize>> {
            let clamp = |r: std::ops::Range<usize>| r.start.min(len)..r.end.min(len);
            match &records {
                Some(r) => self.records.get(r.clone()).unwrap_or_default().iter().map(|s| clamp(s.start.0[t]..s.end.0[t])).collect(),
                None => {
                    let (mut gaps, mut at) = (Vec::new(), 0);
                    for s in &self.records {
                        gaps.push(clamp(at..s.start.0[t].max(at)));
                        at = at.max(s.end.0[t]);
                    }
                    gaps.push(clamp(at..len.max(at)));
                    gaps
                }
            }
        };
        fn pick<T: Clone>(rows: &[T], spans: Vec<std::ops::Range<usize>>) -> Vec<T> {
            spans.into_iter().flat_map(|r| rows[r].iter().cloned()).collect()
        }
        Batch {
            batch_id: self.batch_id.clone(),
            snapshots: pick(&self.snapshots, spans(0, self.snapshots.len())),
            facts: pick(&self.facts, spans(1, self.facts.len())),
            audit: pick(&self.audit, spans(2, self.audit.len())),
            sla: pick(&self.sla, spans(3, self.sla.len())),
            evaluations: pick(&self.evaluations, spans(4, self.evaluations.len())),
            violations: pick(&self.violations, spans(5, self.violations.len())),
            drifts: pick(&self.drifts, spans(6, self.drifts.len())),
            confirmations: pick(&self.confirmations, spans(7, self.confirmations.len())),
            link: None,
            records: Vec::new(),
        }
    }

    /// This batch without the refused rows: per table (in [`RowCounts`]'
    /// order), `own` says whether the store took the rows of no record,
    /// and `refused` holds records' positions and the same for their rows.
    /// What is left keeps its record spans.
    pub fn without(&self, own: [bool; digest::TABLE_COUNT], refused: &[(usize, [bool; digest::TABLE_COUNT])]) -> Batch {
        let mut out = Batch { batch_id: self.batch_id.clone(), ..Default::default() };
        // Rows of no record first, then each record's, spans renumbered.
        out.append(self.part(None).tables(own));
        for i in 0..self.records.len() {
            let mut rows = self.part(Some(i..i + 1));
            if let Some((_, taken)) = refused.iter().find(|(r, _)| *r == i) {
                rows = rows.tables(*taken);
            }
            let start = out.counts(0);
            out.append(rows);
            let end = out.counts(0);
            out.records.push(RecordRows { start, end });
        }
        out
    }

    /// This batch with only the rows of the tables marked in `keep` (in
    /// [`RowCounts`]' order).
    pub fn tables(mut self, keep: [bool; digest::TABLE_COUNT]) -> Batch {
        fn keep_if<T>(rows: &mut Vec<T>, keep: bool) {
            if !keep {
                rows.clear();
            }
        }
        let [snapshots, facts, audit, sla, evaluations, violations, drifts, confirmations] = keep;
        keep_if(&mut self.snapshots, snapshots);
        keep_if(&mut self.facts, facts);
        keep_if(&mut self.audit, audit);
        keep_if(&mut self.sla, sla);
        keep_if(&mut self.evaluations, evaluations);
        keep_if(&mut self.violations, violations);
        keep_if(&mut self.drifts, drifts);
        keep_if(&mut self.confirmations, confirmations);
        self
    }

    fn append(&mut self, mut other: Batch) {
        self.snapshots.append(&mut other.snapshots);
        self.facts.append(&mut other.facts);
        self.audit.append(&mut other.audit);
        self.sla.append(&mut other.sla);
        self.evaluations.append(&mut other.evaluations);
        self.violations.append(&mut other.violations);
        self.drifts.append(&mut other.drifts);
        self.confirmations.append(&mut other.confirmations);
    }

    /// One row of each table that has any: written again (a row written
    /// twice is stored once), it tells whether the store still takes what
    /// it took before.
    pub fn sample(&self) -> Batch {
        fn first<T: Clone>(rows: &[T]) -> Vec<T> {
            rows.first().cloned().into_iter().collect()
        }
        Batch {
            batch_id: self.batch_id.clone(),
            snapshots: first(&self.snapshots),
            facts: first(&self.facts),
            audit: first(&self.audit),
            sla: first(&self.sla),
            evaluations: first(&self.evaluations),
            violations: first(&self.violations),
            drifts: first(&self.drifts),
            confirmations: first(&self.confirmations),
            link: None,
            records: Vec::new(),
        }
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
            + self.confirmations.len()
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

/// What a store failure says about the rows that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The store may take them later: unreachable, overloaded, timing
    /// out, busy, misconfigured until an operator acts. Retried with backoff.
    Transient,
    /// The store refuses these rows and would refuse them again (a value
    /// it cannot parse or hold, a constraint): retrying cannot help; the
    /// batch is split to find the records whose rows they are.
    Refused,
}

/// Why the store failed; [`StoreError::fault`] says whether trying again can help.
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
    /// A setting the store cannot be opened with (a TLS file).
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Whether the same rows may be taken later ([`Fault::Transient`]) or
    /// are refused for what they hold ([`Fault::Refused`]). What is not
    /// known to be the rows' fault is transient: a store that refuses
    /// everything (a table altered by hand, a permission) is waited for,
    /// not emptied into the dead-letter topic.
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::ClickHouse { source, .. } => clickhouse_fault(source),
            StoreError::Sqlite { source, .. } => sqlite_fault(source),
            _ => Fault::Transient,
        }
    }
}

/// ClickHouse exception codes that mean "these values" (ErrorCodes.cpp):
/// unparsable or out-of-range input, a constraint or `throwIf` refusing a
/// row, one INSERT spanning too many partitions.
const CLICKHOUSE_REFUSALS: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DONT_MATCH
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    469, // VIOLATED_CONSTRAINT
];

fn clickhouse_fault(e: &::clickhouse::error::Error) -> Fault {
    use ::clickhouse::error::Error as E;
    match e {
        E::BadResponse(text) => {
            let code = text
                .split_once("Code: ")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u32>().ok());
            match code {
                Some(c) if CLICKHOUSE_REFUSALS.contains(&c) => Fault::Refused,
                // TOO_MANY_PARTS: merges lagging (wait), or one INSERT
                // over too many partitions (the rows' dates: refused).
                Some(252) if text.contains("partitions for single INSERT") => Fault::Refused,
                _ => Fault::Transient,
            }
        }
        // The rows could not be serialized: they never will be.
        E::Custom(_) | E::SequenceMustHaveLength | E::InvalidUtf8Encoding(_) | E::InvalidTagEncoding(_) => Fault::Refused,
        _ => Fault::Transient,
    }
}

fn sqlite_fault(e: &rusqlite::Error) -> Fault {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, C::ConstraintViolation | C::TooBig | C::TypeMismatch) => Fault::Refused,
        rusqlite::Error::ToSqlConversionFailure(_) => Fault::Refused,
        _ => Fault::Transient,
    }
}

/// Everything the collector keeps, whatever keeps it: ClickHouse in the
/// distributed mode ([`clickhouse`]), SQLite in the single-node mode
/// ([`sqlite`]). Each part is the interface of one room's needs.
pub trait Store:
    Streams + Views + AlertLog + WaiverLog + SloStore + EvidenceStore + KeyRing + Retention + AttestationLog + GapLog + Send + Sync
{
}

impl<
        T: Streams + Views + AlertLog + WaiverLog + SloStore + EvidenceStore + KeyRing + Retention + AttestationLog + GapLog + Send + Sync,
    > Store for T
{
}

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
    async fn write_link(&self, link: &evidence::LinkRow) -> Result<(), StoreError>;

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
    pub use super::{
        AlertLog, AttestationLog, EvidenceStore, GapLog, KeyRing, Retention, SharedStore, SloStore, Store, Streams, Views, WaiverLog,
    };
}

/// Opens the configured store: connects to ClickHouse (and migrates it,
/// unless off) or opens the SQLite file.
pub async fn open(store: &config::StoreConfig, clickhouse: &config::ClickHouseConfig) -> Result<SharedStore, StoreError> {
    Ok(match store.kind {
        config::StoreKind::Clickhouse => std::sync::Arc::new(clickhouse::ClickHouseStore::connect(clickhouse).await?),
        config::StoreKind::Sqlite => std::sync::Arc::new(sqlite::SqliteStore::open(&store.sqlite_path)?),
    })
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    fn clickhouse(text: &str) -> StoreError {
        StoreError::ClickHouse { url: "u".into(), source: ::clickhouse::error::Error::BadResponse(text.into()) }
    }

    #[test]
    fn what_the_rows_hold_is_refused_and_the_rest_is_transient() {
        let refused = "Code: 395. DB::Exception: Value passed to 'throwIf' function is non zero";
        assert_eq!(clickhouse(refused).fault(), Fault::Refused);
        assert_eq!(
            clickhouse("Code: 252, e.displayText() = DB::Exception: Too many partitions for single INSERT block (more than 100)").fault(),
            Fault::Refused
        );
        assert_eq!(
            clickhouse("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts").fault(),
            Fault::Transient
        );
        assert_eq!(clickhouse("Code: 241. DB::Exception: Memory limit (total) exceeded").fault(), Fault::Transient);
        assert_eq!(clickhouse("Code: 60. DB::Exception: Table dw.facts doesn't exist").fault(), Fault::Transient);
        assert_eq!(clickhouse("502 Bad Gateway").fault(), Fault::Transient);
        let timeout = StoreError::ClickHouse { url: "u".into(), source: ::clickhouse::error::Error::TimedOut };
        assert_eq!(timeout.fault(), Fault::Transient);
        let sqlite = |code, msg: &str| StoreError::Sqlite {
            path: "p".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(msg.into())),
        };
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT, "refused").fault(), Fault::Refused);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_TOOBIG, "too big").fault(), Fault::Refused);
        assert_eq!(sqlite(rusqlite::ffi::SQLITE_BUSY, "busy").fault(), Fault::Transient);
        assert_eq!(StoreError::Task("x".into()).fault(), Fault::Transient);
    }
}
