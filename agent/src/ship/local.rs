//! The in-process transport of the single-node mode
//! (`driftwatch-collector standalone`): a collector in the same process
//! reads the spool directly instead of a broker, and acknowledges each
//! record once it is stored, exactly as the Kafka sender acknowledges a
//! delivery. What is not acknowledged is read again after a restart.

use std::time::Duration;

use super::producer::Shared;
use super::spool::{Pos, Record};

/// Reads the spool in order, from its acknowledged position.
pub struct SpoolReader {
    shared: Shared,
    cursor: Pos,
    persisted: Pos,
    last_persist: std::time::Instant,
}

impl SpoolReader {
    pub fn new(shared: Shared) -> Self {
        let cursor = shared.lock().acked();
        SpoolReader { shared, cursor, persisted: cursor, last_persist: std::time::Instant::now() }
    }

    /// The next record and the position after it, waiting until one is
    /// spooled. Cancel-safe: nothing is consumed until it returns.
    pub async fn next(&mut self) -> (Record, Pos) {
        loop {
            // Registered before reading: an append between the read and
            // the wait still wakes us.
            let appended = self.shared.appended();
            tokio::pin!(appended);
            appended.as_mut().enable();
            if let Some((rec, next)) = self.shared.lock().read(self.cursor) {
                self.cursor = next;
                return (rec, next);
            }
            // The bell is rung by the spooler; the timeout covers the one
            // notification the Kafka sender might have taken (unused here).
            let _ = tokio::time::timeout(Duration::from_millis(500), appended).await;
        }
    }

    /// Acknowledges the records that end at `positions` (in read order):
    /// they are stored. The position is written to disk at most once a
    /// second, and when the reader is dropped.
    pub fn ack(&mut self, positions: &[Pos]) {
        let mut spool = self.shared.lock();
        for p in positions {
            spool.ack(*p);
        }
        if spool.acked() != self.persisted && self.last_persist.elapsed() >= Duration::from_secs(1) {
            match spool.persist_ack() {
                Ok(()) => self.persisted = spool.acked(),
                Err(e) => tracing::warn!(error = %e, "cannot record the spool position"),
            }
            self.last_persist = std::time::Instant::now();
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let spool = self.shared.lock();
        if spool.acked() != self.persisted {
            if let Err(e) = spool.persist_ack() {
                tracing::warn!(error = %e, "cannot record the spool position");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use driftwatch_schemas::Stream;

    use super::*;
    use crate::ship::spool::Spool;

    fn rec(i: u32) -> Record {
        Record { stream: Stream::Audit, key: "a".into(), payload: format!("message {i}").into_bytes() }
    }

    #[tokio::test]
    async fn records_are_read_in_order_and_only_acknowledged_ones_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::new(Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap());
        let mut reader = SpoolReader::new(shared.clone());
        // Waits for a record appended later.
        let writer = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut s = writer.lock();
            for i in 0..3 {
                s.append(&rec(i)).unwrap();
            }
            s.flush().unwrap();
            drop(s);
            writer.appended_notify();
        });
        let (r0, p0) = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.expect("a record arrives");
        let (r1, _p1) = reader.next().await;
        assert_eq!((r0, r1), (rec(0), rec(1)));
        reader.ack(&[p0]);
        assert_eq!(shared.stats().depth.load(std::sync::atomic::Ordering::Relaxed), 2);
        drop(reader); // persists the acknowledged position
        drop(shared);
        let shared = Shared::new(Spool::open(dir.path(), 1 << 20, 1 << 16).unwrap());
        let mut again = SpoolReader::new(shared);
        assert_eq!(again.next().await.0, rec(1), "what was read but not acknowledged is read again");
    }
}
