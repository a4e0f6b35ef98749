//! Ingest: getting agent messages into the collector. [`kafka`] is the
//! consumer group of the distributed mode; [`decode`] turns records into
//! messages or dead letters; [`Pipeline`] is what every transport feeds:
//! evaluate, gather the batch, store, alert.

pub mod decode;
pub mod kafka;
pub mod topics;

use std::sync::Arc;

use chrono::Utc;
use driftwatch_schemas::Message;

use crate::alert::{Alert, Alerter};
use crate::eval::{Engine, Transition};
use crate::policy::PolicySet;
use crate::store::clickhouse::ClickHouseStore;
use crate::store::{Batch, StoreError};

/// Evaluation, storage and alerting for decoded messages, independent of
/// where they came from.
pub struct Pipeline {
    pub engine: Engine,
    pub store: ClickHouseStore,
    pub alerter: Alerter,
}

/// A batch ready to store, and the alerts to send once it is stored.
pub struct Pending {
    pub batch: Batch,
    pub transitions: Vec<Transition>,
}

impl Pipeline {
    /// Builds the pipeline and restores posture from the store, so that a
    /// restart raises no false alerts.
    pub async fn start(policies: Arc<PolicySet>, store: ClickHouseStore, alerter: Alerter) -> Result<Self, StoreError> {
        let mut engine = Engine::new(policies);
        let restored = store.load_posture().await?;
        tracing::info!(entries = restored.len(), "restored posture from the store");
        for (asset, control, entry) in restored {
            engine.restore(&asset, &control, entry);
        }
        Ok(Pipeline { engine, store, alerter })
    }

    pub fn new_pending() -> Pending {
        Pending { batch: Batch::new(), transitions: Vec::new() }
    }

    /// Evaluates one message into the pending batch.
    pub fn process(&mut self, msg: &Message, pending: &mut Pending) {
        let now = Utc::now();
        match msg {
            Message::Snapshot(s) => {
                pending.batch.add_snapshot(s, &now);
                let applied = self.engine.apply(s);
                pending.batch.add_evaluations(&applied.evaluations, &applied.transitions);
                pending.transitions.extend(applied.transitions);
            }
            Message::Audit(a) => pending.batch.add_audit(a),
            Message::Sla(m) => pending.batch.add_sla(m),
        }
    }

    /// Stores the batch, retrying with backoff until ClickHouse takes it,
    /// then queues its alerts. Returns once the batch is durable.
    pub async fn flush(&self, pending: Pending) {
        let mut wait = std::time::Duration::from_millis(250);
        loop {
            match self.store.write(&pending.batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, rows = pending.batch.rows(), retry_in_ms = wait.as_millis() as u64, "store write failed; offsets not committed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
        tracing::debug!(rows = pending.batch.rows(), batch = %pending.batch.batch_id, "batch stored");
        for t in &pending.transitions {
            self.alerter.send(&Alert::from(t));
        }
    }
}
