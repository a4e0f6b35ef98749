//! Ingest: getting agent messages into the collector. [`kafka`] is the
//! consumer group of the distributed mode; [`decode`] turns records into
//! messages or dead letters; [`Pipeline`] is what every transport feeds:
//! evaluate, gather the batch, store, alert.

pub mod decode;
pub mod kafka;
pub mod reload;
pub mod topics;

use std::sync::Arc;

use chrono::Utc;
use driftwatch_schemas::Message;

use crate::alert::model::Alert;
use crate::alert::runner::Alerting;
use crate::config::EvaluationConfig;
use crate::eval::drift::DriftEvent;
use crate::eval::{Applied, Engine, Transition};
use crate::policy::PolicySet;
use crate::policy::Severity;
use crate::store::prelude::*;
use crate::store::{Batch, StoreError};

/// Evaluation, storage and alerting for decoded messages, independent of
/// where they came from.
pub struct Pipeline {
    pub engine: Engine,
    pub store: SharedStore,
    pub alerting: Alerting,
    /// Drift events at least this severe are alerted.
    pub drift_min_severity: Option<Severity>,
    /// Stored drift events go to the live view's pages.
    pub live: crate::live::Hub,
    /// Every stored batch is a link of this chain.
    pub chain: crate::evidence::Chain,
}

/// A batch ready to store, and the alerts to send once it is stored.
pub struct Pending {
    pub batch: Batch,
    pub transitions: Vec<Transition>,
    /// Attributed and added to the batch at [`Pipeline::flush`].
    pub drifts: Vec<DriftEvent>,
    /// Assets whose records are in the batch (this collector owns them).
    pub assets: std::collections::BTreeSet<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.batch.rows() == 0 && self.drifts.is_empty()
    }

    fn add(&mut self, applied: Applied) {
        self.batch.add_evaluations(&applied.evaluations, &applied.transitions);
        self.transitions.extend(applied.transitions);
        self.drifts.extend(applied.drifts);
    }
}

impl Pipeline {
    /// Builds the pipeline and restores posture from the store, so that a
    /// restart raises no false alerts.
    pub async fn start(
        policies: Arc<PolicySet>,
        store: SharedStore,
        alerting: Alerting,
        cfg: &EvaluationConfig,
        drift_min_severity: Option<Severity>,
        chain_id: Option<String>,
    ) -> Result<Self, StoreError> {
        let engine = Engine::new(policies, cfg.attribution_window()).with_unknown_after(cfg.unknown_after());
        let chain = match chain_id {
            None => crate::evidence::Chain::new(crate::evidence::Chain::default_id()),
            Some(id) => {
                let epoch = chrono::DateTime::<Utc>::UNIX_EPOCH;
                match store.evidence_heads(Some(&id), epoch, Utc::now() + chrono::Duration::days(1)).await?.into_iter().next() {
                    Some(h) => crate::evidence::Chain::resume(id, h.last_seq, h.head),
                    None => crate::evidence::Chain::new(id),
                }
            }
        };
        tracing::info!(chain = %chain.id, "evidence chain");
        let mut pipeline = Pipeline { engine, store, alerting, drift_min_severity, live: Default::default(), chain };
        pipeline.restore_posture().await?;
        Ok(pipeline)
    }

    /// Replaces the engine's posture by the store's (at start, and after a
    /// consumer-group rebalance, before any record of a newly assigned
    /// partition is evaluated).
    pub async fn restore_posture(&mut self) -> Result<(), StoreError> {
        let restored = self.store.load_posture().await?;
        tracing::info!(entries = restored.len(), "restored posture from the store");
        self.engine.replace_posture(restored);
        Ok(())
    }

    pub fn new_pending() -> Pending {
        Pending { batch: Batch::new(), transitions: Vec::new(), drifts: Vec::new(), assets: Default::default() }
    }

    /// Evaluates one message into the pending batch.
    pub fn process(&mut self, msg: &Message, pending: &mut Pending) {
        let now = Utc::now();
        if !pending.assets.contains(msg.asset_id()) {
            pending.assets.insert(msg.asset_id().to_string());
        }
        match msg {
            Message::Snapshot(s) => {
                pending.batch.add_snapshot(s, &now);
                let timer = crate::metrics::METRICS.evaluate_seconds.start_timer();
                let applied = self.engine.apply(s);
                timer.observe_duration();
                pending.add(applied);
            }
            Message::Audit(a) => {
                pending.batch.add_audit(a);
                pending.add(self.engine.observe(msg));
            }
            Message::Sla(m) => {
                pending.batch.add_sla(m);
                pending.add(self.engine.observe(msg));
            }
        }
    }

    /// Ages detection windows (resolving detections that no longer hold).
    pub fn tick(&mut self, pending: &mut Pending) {
        pending.add(self.engine.tick(Utc::now()));
    }

    /// Swaps in reloaded policy packs and re-evaluates every known asset.
    pub fn reload(&mut self, policies: Arc<PolicySet>, pending: &mut Pending) {
        tracing::info!(controls = policies.controls.len(), "policy packs reloaded; re-evaluating known assets");
        pending.add(self.engine.replace_policies(policies, Utc::now()));
    }

    /// Swaps in changed waivers: what they waive or stop waiving is
    /// evaluated again.
    pub fn replace_waivers(&mut self, waivers: Arc<crate::waiver::Waivers>, pending: &mut Pending) {
        pending.add(self.engine.replace_waivers(waivers, Utc::now()));
    }

    /// Attributes drifts, stores the batch (retrying with backoff until
    /// ClickHouse takes it), then queues its alerts. Returns once the batch
    /// is durable.
    pub async fn flush(&mut self, mut pending: Pending) {
        self.engine.attribute(&mut pending.drifts);
        pending.batch.add_drifts(&pending.drifts);
        // Sealed once: a retried write stores the same link.
        pending.batch.link = self.chain.seal(&pending.batch, Utc::now());
        let mut wait = std::time::Duration::from_millis(250);
        let timer = crate::metrics::METRICS.store_seconds.start_timer();
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
        timer.observe_duration();
        crate::metrics::METRICS.batches_stored.inc();
        crate::metrics::METRICS.rows_stored.inc_by(pending.batch.rows() as u64);
        tracing::debug!(rows = pending.batch.rows(), batch = %pending.batch.batch_id, "batch stored");
        self.live.publish(&pending.drifts);
        self.alerting.owned(std::mem::take(&mut pending.assets).into_iter().collect());
        for t in &pending.transitions {
            self.alerting.send(Alert::from_transition(t, &t.asset_labels));
        }
        for d in pending.drifts.iter().filter(|d| self.drift_min_severity.is_some_and(|min| d.evaluation.severity >= min)) {
            self.alerting.send(Alert::from_drift(d, &d.asset_labels));
        }
    }
}
