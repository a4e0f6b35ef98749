//! The SQLite store of the single-node mode (`driftwatch-collector
//! standalone`): one file, nothing to install.
//!
//! Every row of every table is kept as the JSON of the very row type the
//! ClickHouse store writes ([`super::rows`], [`super::records`]), in one
//! table `rows` with the columns the reads filter and order on: the table
//! it belongs to, a key (the ClickHouse table's ordering key, so a row
//! written twice is stored once, as ReplacingMergeTree folds it), the
//! asset, a subject (control, probe, path, chain…), its time, an ordering
//! value ("latest" means the greatest) and its batch. The reads of
//! `schemas/clickhouse/queries` are answered by SQL over those columns and
//! a little Rust over the rows; one file per part of the [`super::Store`]
//! interface, as in [`super::clickhouse`].
//!
//! A batch is written in one transaction: it is stored entirely or not at
//! all. SQLite calls block, so they run on tokio's blocking pool, one at a
//! time (one connection behind a mutex; WAL lets readers of other
//! processes, such as `driftwatch-collector posture`, read meanwhile).

mod alerting;
mod attestations;
mod evidence;
mod gaps;
mod keys;
mod retention;
mod slo;
mod views;
mod waivers;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, ToSql};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::attestations::{AttestationFileRow, AttestationRow};
use super::gaps::GapEventRow;
use super::keys::AssetKeyRow;
use super::records::{ApiAuditRow, NotificationRow, RootWriteRow, SilenceWriteRow, WaiverRow};
use super::rows::*;
use super::{Batch, StoreError, Streams};
use crate::store::evidence::LinkRow;
use crate::store::rows::ScoreRow;

/// The layout version this build writes (`PRAGMA user_version`).
const LAYOUT: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rows (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    at INTEGER NOT NULL,
    ord INTEGER NOT NULL,
    batch_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tbl, key)
);
CREATE INDEX IF NOT EXISTS rows_by_subject ON rows (tbl, asset_id, subject, ord);
CREATE INDEX IF NOT EXISTS rows_by_time ON rows (tbl, at);
CREATE INDEX IF NOT EXISTS rows_by_batch ON rows (batch_id) WHERE batch_id != '';
";

/// A SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. A file written by
    /// a newer layout is refused rather than misread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io { path: dir.display().to_string(), source: e })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        let layout: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        if layout > LAYOUT {
            return Err(StoreError::Layout { path: path.display().to_string(), found: layout, supported: LAYOUT });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", LAYOUT).map_err(err)?;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path: path.to_path_buf() })
    }

    /// Runs `f` on the connection, off the async threads.
    async fn with<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (conn, path) = (self.conn.clone(), self.path.display().to_string());
        let joined = tokio::task::spawn_blocking(move || {
            // A panic elsewhere while holding the lock leaves SQLite itself
            // consistent (a transaction not committed is rolled back).
            let mut c = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut c)
        })
        .await;
        match joined {
            Ok(r) => r.map_err(|source| StoreError::Sqlite { path, source }),
            Err(e) => Err(StoreError::Task(e.to_string())),
        }
    }

    /// Writes `rows` in one transaction.
    async fn put<T: Doc + Send + Sync + 'static>(&self, rows: Vec<T>) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c.transaction()?;
            put(&tx, &rows)?;
            tx.commit()
        })
        .await
    }
}

/// A row as the SQLite store keeps it.
pub(crate) trait Doc: Serialize + DeserializeOwned {
    /// The ClickHouse table it stands for.
    const TABLE: &'static str;
    /// Unique within the table; a row written again replaces it.
    fn key(&self) -> String;
    fn asset(&self) -> &str {
        ""
    }
    fn subject(&self) -> &str {
        ""
    }
    /// Its time (seconds), for periods and retention.
    fn at(&self) -> u32;
    /// Greater is later, for "the latest".
    fn ord(&self) -> i64 {
        i64::from(self.at()) * 1000
    }
    fn batch(&self) -> &str {
        ""
    }
}

/// Joins key parts with a separator no identifier holds.
fn key(parts: &[&dyn std::fmt::Display]) -> String {
    parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\u{1f}")
}

macro_rules! doc {
    ($t:ty, $table:literal, |$r:ident| key: $key:expr, asset: $asset:expr, subject: $subject:expr, at: $at:expr, ord: $ord:expr, batch: $batch:expr) => {
        #[allow(unused_variables)]
        impl Doc for $t {
            const TABLE: &'static str = $table;
            fn key(&self) -> String {
                let $r = self;
                $key
            }
            fn asset(&self) -> &str {
                let $r = self;
                $asset
            }
            fn subject(&self) -> &str {
                let $r = self;
                $subject
            }
            fn at(&self) -> u32 {
                let $r = self;
                $at
            }
            fn ord(&self) -> i64 {
                let $r = self;
                $ord
            }
            fn batch(&self) -> &str {
                let $r = self;
                $batch
            }
        }
    };
}

fn ms(secs: u32, ms: u16) -> i64 {
    i64::from(secs) * 1000 + i64::from(ms)
}

doc!(SnapshotRow, "snapshots", |r| key: key(&[&r.asset_id, &r.sequence, &r.snapshot_id]), asset: &r.asset_id, subject: "",
    at: r.collected_at, ord: ms(r.received_at, 0), batch: &r.batch_id);
doc!(FactRow, "facts", |r| key: key(&[&r.asset_id, &r.path, &r.collected_at, &r.snapshot_id]), asset: &r.asset_id, subject: &r.path,
    at: r.collected_at, ord: ms(r.collected_at, 0), batch: &r.batch_id);
doc!(AuditRow, "audit_events", |r| key: key(&[&r.asset_id, &r.timestamp, &r.event_id]), asset: &r.asset_id, subject: &r.event_id,
    at: r.timestamp, ord: ms(r.timestamp, r.timestamp_ms), batch: &r.batch_id);
doc!(SlaRow, "sla_measurements", |r| key: key(&[&r.asset_id, &r.probe_id, &r.timestamp, &r.timestamp_ms]), asset: &r.asset_id,
    subject: &r.probe_id, at: r.timestamp, ord: ms(r.timestamp, r.timestamp_ms), batch: &r.batch_id);
doc!(EvaluationRow, "evaluations", |r| key: key(&[&r.asset_id, &r.control_id, &r.evaluated_at, &r.snapshot_id]), asset: &r.asset_id,
    subject: &r.control_id, at: r.evaluated_at, ord: ms(r.evaluated_at, r.evaluated_ms), batch: &r.batch_id);
doc!(ViolationRow, "violations", |r| key: key(&[&r.asset_id, &r.control_id, &r.violation_id, &r.event]), asset: &r.asset_id,
    subject: &r.control_id, at: r.at, ord: ms(r.at, 0), batch: &r.batch_id);
doc!(ConfirmationRow, "confirmations", |r| key: key(&[&r.asset_id, &r.collected_at, &r.snapshot_id, &r.batch_id]), asset: &r.asset_id,
    subject: &r.snapshot_id, at: r.collected_at, ord: ms(r.collected_at, r.collected_ms), batch: &r.batch_id);
doc!(DriftRow, "drift_events", |r| key: key(&[&r.asset_id, &r.control_id, &r.at, &r.drift_id]), asset: &r.asset_id,
    subject: &r.control_id, at: r.at, ord: ms(r.at, 0), batch: &r.batch_id);
doc!(LinkRow, "evidence_chain", |r| key: key(&[&r.chain_id, &format!("{:020}", r.seq)]), asset: "", subject: &r.chain_id,
    at: r.at, ord: r.seq.min(i64::MAX as u64) as i64, batch: &r.batch_id);
doc!(RootWriteRow, "evidence_roots", |r| key: key(&[&r.chain_id, &r.hour]), asset: "", subject: &r.chain_id,
    at: r.hour, ord: ms(r.hour, 0), batch: "");
doc!(NotificationRow, "notification_log", |r| key: key(&[&r.receiver, &r.group_key, &r.sent_at, &uuid::Uuid::now_v7()]),
    asset: &r.receiver, subject: &r.group_key, at: r.sent_at, ord: ms(r.sent_at, 0), batch: "");
doc!(SilenceWriteRow, "silences", |r| key: key(&[&r.silence_id, &r.version]), asset: "", subject: &r.silence_id,
    at: r.starts_at, ord: r.version.min(i64::MAX as u64) as i64, batch: "");
doc!(ApiAuditRow, "api_audit", |r| key: key(&[&r.at, &uuid::Uuid::now_v7()]), asset: "", subject: &r.key_name,
    at: r.at, ord: ms(r.at, 0), batch: "");
doc!(WaiverRow, "waivers", |r| key: key(&[&r.waiver_id, &r.version]), asset: "", subject: &r.waiver_id,
    at: r.updated_at, ord: r.version.min(i64::MAX as u64) as i64, batch: "");
doc!(ControlRow, "controls", |r| key: key(&[&r.control_id]), asset: "", subject: &r.control_id, at: r.loaded_at,
    ord: ms(r.loaded_at, 0), batch: "");
doc!(AssetKeyRow, "asset_keys", |r| key: key(&[&r.asset_id, &r.fingerprint, &r.version]), asset: &r.asset_id,
    subject: &r.fingerprint, at: r.decided_at, ord: r.version.min(i64::MAX as u64) as i64, batch: "");
doc!(AttestationRow, "attestations", |r| key: key(&[&r.control_id, &r.attestation_id]), asset: "", subject: &r.control_id,
    at: r.attested_at, ord: ms(r.attested_at, 0), batch: "");
doc!(AttestationFileRow, "attestation_files", |r| key: key(&[&r.sha256]), asset: "", subject: &r.sha256, at: r.stored_at,
    ord: ms(r.stored_at, 0), batch: "");
doc!(GapEventRow, "gap_events", |r| key: key(&[&r.gap_id, &r.version]), asset: "", subject: &r.gap_id, at: r.changed_at,
    ord: r.version.min(i64::MAX as u64) as i64, batch: "");
doc!(ScoreRow, "scores", |r| key: key(&[&r.at, &r.framework, &r.scope, &r.label_key, &r.group_value]), asset: "",
    subject: &r.framework, at: r.at, ord: ms(r.at, 0), batch: "");

/// The latest result a snapshot confirmed for an (asset, control), kept
/// per pair as ClickHouse's `latest_evaluations` keeps it (fed by
/// `latest_confirmations_mv`, 0017): derived from the confirmations rows,
/// not evidence itself (no batch; `verify` reads the confirmations).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Confirmation {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub evaluated_at: u32,
    pub evaluated_ms: u16,
    pub snapshot_id: String,
    pub sequence: i64,
}

doc!(Confirmation, "latest_confirmations", |r| key: key(&[&r.asset_id, &r.control_id]), asset: &r.asset_id, subject: &r.control_id,
    at: r.evaluated_at, ord: ms(r.evaluated_at, r.evaluated_ms), batch: "");

impl Confirmation {
    /// The confirmations a confirmations row carries.
    pub fn of(s: &ConfirmationRow) -> impl Iterator<Item = Confirmation> + '_ {
        s.controls.iter().zip(&s.statuses).map(|(control, status)| Confirmation {
            asset_id: s.asset_id.clone(),
            control_id: control.clone(),
            status: status.clone(),
            evaluated_at: s.collected_at,
            evaluated_ms: s.collected_ms,
            snapshot_id: s.snapshot_id.clone(),
            sequence: s.sequence,
        })
    }

    /// Makes `e`, the pair's last stored evaluation, the one this confirms
    /// if it is later: its time, snapshot and sequence.
    pub fn apply(&self, e: &mut EvaluationRow) {
        if self.ord() > ms(e.evaluated_at, e.evaluated_ms) {
            e.status = self.status.clone();
            e.evaluated_at = self.evaluated_at;
            e.evaluated_ms = self.evaluated_ms;
            e.snapshot_id = self.snapshot_id.clone();
            e.sequence = self.sequence;
        }
    }
}

/// Inserts a batch's rows (all but its link).
fn put_rows(c: &Connection, b: &Batch) -> rusqlite::Result<()> {
    let confirmed: Vec<Confirmation> = b.confirmations.iter().flat_map(Confirmation::of).collect();
    if !confirmed.is_empty() {
        // The latest per pair: an older one (a redelivery) does not replace it.
        let mut stmt = c.prepare_cached(
            "INSERT INTO rows (tbl, key, asset_id, subject, at, ord, batch_id, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)
             ON CONFLICT (tbl, key) DO UPDATE SET at = excluded.at, ord = excluded.ord, doc = excluded.doc WHERE excluded.ord >= rows.ord",
        )?;
        for k in &confirmed {
            let doc = serde_json::to_string(k).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            stmt.execute(rusqlite::params![Confirmation::TABLE, k.key(), k.asset(), k.subject(), k.at(), k.ord(), doc])?;
        }
    }
    put(c, &b.snapshots)?;
    put(c, &b.facts)?;
    put(c, &b.audit)?;
    put(c, &b.sla)?;
    put(c, &b.evaluations)?;
    put(c, &b.violations)?;
    put(c, &b.drifts)?;
    put(c, &b.confirmations)
}

/// Inserts (or replaces, by key) `rows`.
fn put<T: Doc>(c: &Connection, rows: &[T]) -> rusqlite::Result<()> {
    let mut stmt = c.prepare_cached(
        "INSERT OR REPLACE INTO rows (tbl, key, asset_id, subject, at, ord, batch_id, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in rows {
        let doc = serde_json::to_string(r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        stmt.execute(rusqlite::params![T::TABLE, r.key(), r.asset(), r.subject(), r.at(), r.ord(), r.batch(), doc])?;
    }
    Ok(())
}

/// The rows of `T`'s table that match `filter` (SQL over the columns,
/// `?1`… bound to `params`), in order. `group`: only the latest row of
/// each group (SQLite takes a bare column from the row of the `max`).
fn docs<T: Doc>(c: &Connection, filter: &str, group: Option<&str>, params: &[&dyn ToSql]) -> rusqlite::Result<Vec<T>> {
    let sql = match group {
        None => format!("SELECT key, doc FROM rows WHERE tbl = '{}' AND ({filter}) ORDER BY ord, rowid", T::TABLE),
        Some(g) => format!("SELECT key, doc, max(ord) FROM rows WHERE tbl = '{}' AND ({filter}) GROUP BY {g}", T::TABLE),
    };
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, doc) = row?;
        match serde_json::from_str(&doc) {
            Ok(v) => out.push(v),
            // Written by another version: skipped, like an unreadable
            // ClickHouse row.
            Err(e) => tracing::error!(table = T::TABLE, key = %key.replace('\u{1f}', "/"), error = %e, "stored row unreadable; skipped"),
        }
    }
    Ok(out)
}

/// `(asset_id, subject, value)` of an aggregate over `table`.
fn per_subject(c: &Connection, sql: &str, params: &[&dyn ToSql]) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// A list bound as one parameter (`IN (SELECT value FROM json_each(?))`).
fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl Streams for SqliteStore {
    /// One transaction: rows and link together.
    async fn write(&self, b: &Batch) -> Result<(), StoreError> {
        // Cloned once: the blocking pool needs the rows owned.
        let b = b.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            put_rows(&tx, &b)?;
            if let Some(link) = &b.link {
                put(&tx, std::slice::from_ref(link))?;
            }
            tx.commit()
        })
        .await
    }

    async fn write_rows(&self, b: &Batch) -> Result<(), StoreError> {
        let b = b.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            put_rows(&tx, &b)?;
            tx.commit()
        })
        .await
    }

    async fn write_link(&self, link: &crate::store::evidence::LinkRow) -> Result<(), StoreError> {
        self.put(vec![link.clone()]).await
    }

    async fn put_scores(&self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        self.put(rows.to_vec()).await
    }

    async fn put_controls(&self, rows: &[ControlRow]) -> Result<(), StoreError> {
        self.put(rows.to_vec()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn location(&self) -> String {
        format!("SQLite database {}", self.path.display())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("driftwatch.db")).unwrap();
        (dir, s)
    }

    /// A batch that opens violation `v1` of control `c` on `asset`.
    pub(crate) fn opening(asset: &str) -> Batch {
        let mut b = Batch::new();
        b.violations.push(ViolationRow {
            violation_id: "v1".into(),
            asset_id: asset.into(),
            control_id: "c".into(),
            title: "t".into(),
            severity: "high".into(),
            event: "opened".into(),
            at: 100,
            frameworks: vec![],
            evidence: "{}".into(),
            batch_id: b.batch_id.clone(),
        });
        b
    }

    #[tokio::test]
    async fn a_row_written_twice_is_stored_once_and_a_newer_layout_is_refused() {
        let (dir, s) = store();
        let b = opening("a");
        s.write(&b).await.unwrap();
        s.write(&b).await.unwrap();
        let n: i64 = s.with(|c| c.query_row("SELECT count(*) FROM rows", [], |r| r.get(0))).await.unwrap();
        assert_eq!(n, 1);
        s.with(|c| c.pragma_update(None, "user_version", LAYOUT + 1)).await.unwrap();
        drop(s);
        let err = SqliteStore::open(&dir.path().join("driftwatch.db")).err().unwrap().to_string();
        assert!(err.contains("layout 2") && err.contains("driftwatch.db"), "{err}");
    }
}
