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
