//! Putting a batch's rows into the store so that no record can stop a
//! partition. A failure the store may get over (unreachable, overloaded,
//! busy) is retried with backoff while the records' offsets wait; rows the
//! store refuses for what they hold ([`Fault::Refused`]) are traced to
//! their records by splitting the batch, and only those records are
//! refused: the transport dead-letters them ([`super::Source::refuse`]) and
//! the rest of the batch is stored. Of a refused record, the tables that
//! take its rows keep them (ClickHouse has no transaction across tables:
//! a failed batch may have left them there already), so that the evidence
//! chain seals exactly what the store holds.
//!
//! A store that refuses rows it took before (a table altered by hand) is
//! not a bad record: before records are refused, a sample of the last
//! stored batch is written again (a row written twice is stored once); if
//! the store refuses that too, the batch is waited on like a transient
//! failure.

use std::time::Duration;

use crate::store::{Batch, Fault, StoreError, Streams};
use crate::tasks::Backoff;

/// A record of a batch whose rows the store refused: its position among
/// the batch's records, whether each table took its rows of it (in
/// [`crate::store::RowCounts`]' order), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub record: usize,
    pub taken: [bool; crate::store::digest::TABLE_COUNT],
    pub reason: String,
}

/// What [`store_rows`] stored of a batch: all but the refused records'
/// rows, and of the rows of no record, those of the tables marked in `own`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub own: [bool; crate::store::digest::TABLE_COUNT],
    pub refused: Vec<Refusal>,
}

impl Stored {
    fn all() -> Stored {
        Stored { own: [true; crate::store::digest::TABLE_COUNT], refused: Vec::new() }
    }

    /// Whether every row of the batch was stored.
    pub fn whole(&self) -> bool {
        self.refused.is_empty() && self.own == [true; crate::store::digest::TABLE_COUNT]
    }

    /// Whether each of the batch's `drifts` drift events was stored (drift
    /// rows are the drift events, in order).
    pub fn drifts_kept(&self, batch: &Batch, drifts: usize) -> Vec<bool> {
        let mut kept = vec![self.own[6]; drifts];
        for (i, span) in batch.records.iter().enumerate() {
            let taken = self.refused.iter().find(|r| r.record == i).is_none_or(|r| r.taken[6]);
            for k in kept.iter_mut().take(span.end.0[6]).skip(span.start.0[6]) {
                *k = taken;
            }
        }
        kept
    }

    /// The rows of `batch` that were stored.
    pub fn of(&self, batch: &Batch) -> Batch {
        let refused: Vec<(usize, [bool; crate::store::digest::TABLE_COUNT])> = self.refused.iter().map(|r| (r.record, r.taken)).collect();
        batch.without(self.own, &refused)
    }
}

/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Retries `write` with backoff while its failures are transient; returns
/// the first refusal.
pub async fn until_stored<F, Fut>(rows: usize, mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(250), MAX_BACKOFF);
    loop {
        let e = match write().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let fault = e.fault();
        let label = if fault == Fault::Refused { "refused" } else { "transient" };
        crate::metrics::METRICS.store_write_failures.with_label_values(&[label]).inc();
        if fault == Fault::Refused {
            return Err(e);
        }
        tracing::error!(error = %e, rows, retry_in_ms = backoff.next_wait().as_millis() as u64, "store write failed; offsets not committed");
        backoff.wait().await;
    }
}

/// Stores `batch`'s rows (every table but the evidence chain) and says
/// what was stored: every row but those the store refused. `sample`: rows
/// of an earlier batch the store took (see the module's note).
pub async fn store_rows<S: Streams + ?Sized + Sync>(store: &S, batch: &Batch, sample: Option<&Batch>) -> Stored {
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    loop {
        let refusal = match until_stored(batch.rows(), || store.write_rows(batch)).await {
            Ok(()) => return Stored::all(),
            Err(e) => e,
        };
        let Some(sample) = sample.filter(|s| s.rows() > 0) else { return split(store, batch, &refusal).await };
        match until_stored(sample.rows(), || store.write_rows(sample)).await {
            Ok(()) => return split(store, batch, &refusal).await,
            Err(e) => {
                crate::metrics::METRICS.store_write_failures.with_label_values(&["systemic"]).inc();
                tracing::error!(
                    error = %refusal, sample_error = %e, rows = batch.rows(), retry_in_ms = backoff.next_wait().as_millis() as u64,
                    "the store refuses rows it took before (its schema altered?): the batch waits, offsets not committed"
                );
                backoff.wait().await;
            }
        }
    }
}

/// Writes `batch` in parts until each refused part is one record's rows:
/// those records are the refusals. Rows of no record (the collector's
/// own) that are refused are a defect: logged, counted and dropped, never
/// retried forever.
async fn split<S: Streams + ?Sized + Sync>(store: &S, batch: &Batch, first: &StoreError) -> Stored {
    tracing::warn!(error = %first, records = batch.records.len(), batch = %batch.batch_id, "the store refused the batch's rows; finding whose");
    let mut own = [true; crate::store::digest::TABLE_COUNT];
    let part = batch.part(None);
    if part.rows() > 0 && until_stored(part.rows(), || store.write_rows(&part)).await.is_err() {
        let rows = part.rows();
        if let Some(r) = refusal(store, &batch.batch_id, part, 0).await {
            own = r.taken;
            crate::metrics::METRICS.store_dropped_rows.inc_by(rows as u64);
            tracing::error!(reason = %r.reason, batch = %batch.batch_id, "the store refused rows the collector derived on its own; dropped");
        }
    }
    let mut refused = Vec::new();
    // Record ranges still to write: bisected until each refused one is a
    // single record.
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    parts.push(0..batch.records.len());
    while let Some(r) = parts.pop() {
        let part = batch.part(Some(r.clone()));
        if part.rows() == 0 {
            continue;
        }
        match until_stored(part.rows(), || store.write_rows(&part)).await {
            Ok(()) => {}
            Err(_) if r.len() == 1 => {
                if let Some(refusal) = refusal(store, &batch.batch_id, part, r.start).await {
                    crate::metrics::METRICS.store_refused_records.inc();
                    refused.push(refusal);
                }
            }
            Err(_) => {
                let mid = r.start + r.len() / 2;
                // Popped first half first: records keep their order.
                parts.push(mid..r.end);
                parts.push(r.start..mid);
            }
        }
    }
    refused.sort_by_key(|r| r.record);
    Stored { own, refused }
}

/// One record's rows, refused together, written table by table: what the
/// store takes is kept; the tables that refuse name the refusal (none: the
/// rows were refused only together, and are all stored now).
async fn refusal<S: Streams + ?Sized + Sync>(store: &S, batch_id: &str, rows: Batch, record: usize) -> Option<Refusal> {
    let mut taken = [true; crate::store::digest::TABLE_COUNT];
    let mut why = Vec::new();
    for (t, table) in crate::evidence::TABLES.iter().enumerate() {
        let mut only = [false; crate::store::digest::TABLE_COUNT];
        only[t] = true;
        let part = rows.clone().tables(only);
        if part.rows() == 0 {
            continue;
        }
        if let Err(e) = until_stored(part.rows(), || store.write_rows(&part)).await {
            taken[t] = false;
            why.push(format!("{table}: {e}"));
        }
    }
    if why.is_empty() {
        return None;
    }
    Some(Refusal { record, taken, reason: format!("the store refused this record's rows (batch {batch_id}): {}", why.join("; ")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::FactRow;
    use crate::store::{RecordRows, RowCounts};
    use std::sync::Mutex;

    /// A store that refuses any batch holding a fact whose path is
    /// "poison" (or everything, once `broken`), and keeps what it takes.
    #[derive(Default)]
    struct Picky {
        facts: Mutex<Vec<String>>,
        writes: Mutex<usize>,
        broken: std::sync::atomic::AtomicBool,
    }

    fn refusal() -> StoreError {
        StoreError::Sqlite {
            path: "test".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT), Some("poison".into())),
        }
    }

    #[async_trait::async_trait]
    impl Streams for Picky {
        async fn write_rows(&self, b: &Batch) -> Result<(), StoreError> {
            *self.writes.lock().unwrap() += 1;
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) || b.facts.iter().any(|f| f.path == "poison") {
                return Err(refusal());
            }
            self.facts.lock().unwrap().extend(b.facts.iter().map(|f| f.path.clone()));
            Ok(())
        }
        async fn write_link(&self, _: &crate::evidence::LinkRow) -> Result<(), StoreError> {
            Ok(())
        }
        async fn put_scores(&self, _: &[crate::store::rows::ScoreRow]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn put_controls(&self, _: &[crate::store::rows::ControlRow]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn location(&self) -> String {
            "test".into()
        }
    }

    /// A batch of one fact per record, named by `paths`, and `own` facts
    /// of no record before them.
    fn batch(own: &[&str], paths: &[&str]) -> Batch {
        let mut b = Batch::new();
        let fact = |p: &str| FactRow {
            asset_id: "a".into(),
            snapshot_id: "s".into(),
            sequence: 1,
            snapshot_kind: "full".into(),
            collected_at: 0,
            path: p.into(),
            value_type: "string".into(),
            value: String::new(),
            batch_id: String::new(),
        };
        b.facts.extend(own.iter().map(|p| fact(p)));
        for p in paths {
            let start = b.counts(0);
            b.facts.push(fact(p));
            b.records.push(RecordRows { start, end: b.counts(0) });
        }
        b
    }

    #[tokio::test]
    async fn only_the_records_the_store_refuses_are_refused() {
        let store = Picky::default();
        let b = batch(&["tick"], &["a", "poison", "b", "c", "d", "poison", "e"]);
        let stored = store_rows(&store, &b, None).await;
        assert_eq!(stored.own, [true; crate::store::digest::TABLE_COUNT]);
        let refused = &stored.refused;
        assert_eq!(refused.iter().map(|r| r.record).collect::<Vec<_>>(), vec![1, 5]);
        assert!(refused[0].reason.contains(&b.batch_id) && refused[0].reason.contains("poison"), "{}", refused[0].reason);
        let mut taken = store.facts.lock().unwrap().clone();
        taken.sort();
        assert_eq!(taken, ["a", "b", "c", "d", "e", "tick"]);
        // The rows left are the batch without the refused records.
        assert!(refused.iter().all(|r| !r.taken[1] && r.taken[0]), "facts refused, other tables took theirs: {refused:?}");
        let mut kept: Vec<String> = stored.of(&b).facts.into_iter().map(|f| f.path).collect();
        kept.sort();
        assert_eq!(kept, taken);
    }

    #[tokio::test]
    async fn a_batch_the_store_takes_is_written_once() {
        let store = Picky::default();
        assert!(store_rows(&store, &batch(&[], &["a", "b"]), None).await.whole());
        assert_eq!(*store.writes.lock().unwrap(), 1);
    }

    /// A store that refuses what it took before is waited for: nothing is
    /// refused while the sample fails, and the batch is stored once the
    /// store takes rows again.
    #[tokio::test(start_paused = true)]
    async fn a_store_refusing_everything_is_waited_for_not_emptied() {
        let store = std::sync::Arc::new(Picky::default());
        let sample = batch(&[], &["earlier"]);
        store.broken.store(true, std::sync::atomic::Ordering::SeqCst);
        let task = {
            let store = store.clone();
            tokio::spawn(async move { store_rows(&*store, &batch(&[], &["a", "b"]), Some(&sample)).await })
        };
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!task.is_finished(), "the batch waits while the store refuses everything");
        store.broken.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(task.await.unwrap().whole(), "nothing refused");
        assert!(store.facts.lock().unwrap().contains(&"a".to_string()));
    }

    #[test]
    fn parts_hold_each_records_rows_and_the_rest_the_collectors_own() {
        let b = batch(&["own1"], &["a", "b", "c"]);
        let paths = |b: Batch| b.facts.into_iter().map(|f| f.path).collect::<Vec<_>>();
        assert_eq!(paths(b.part(Some(1..3))), ["b", "c"]);
        assert_eq!(paths(b.part(None)), ["own1"]);
        let mut facts_refused = [true; crate::store::digest::TABLE_COUNT];
        facts_refused[1] = false;
        assert_eq!(paths(b.without([true; crate::store::digest::TABLE_COUNT], &[(0, facts_refused)])), ["own1", "b", "c"]);
        assert_eq!(
            b.without([true; crate::store::digest::TABLE_COUNT], &[(0, facts_refused)]).records.len(),
            3,
            "the refused record keeps its (empty) span"
        );
        assert_eq!(paths(b.without(facts_refused, &[])), ["a", "b", "c"]);
        // Spans past the rows (never made so) select nothing rather than panic.
        let mut odd = b.clone();
        odd.records.push(RecordRows {
            start: RowCounts([9; crate::store::digest::TABLE_COUNT]),
            end: RowCounts([12; crate::store::digest::TABLE_COUNT]),
        });
        assert!(odd.part(Some(3..4)).rows() == 0);
    }
}
