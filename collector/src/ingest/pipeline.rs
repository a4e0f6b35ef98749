//! The pipeline the consumer loop feeds: evaluate each decoded message
//! (the engine), gather the batch's rows and raise its alerts at once,
//! then store the batch ([`super::persist`]), seal its evidence link and
//! send its live drift and drift alerts.

use std::sync::Arc;

use chrono::Utc;
use driftwatch_schemas::Message;

use super::config::EvaluationConfig;
use super::persist;
use crate::alert::model::Alert;
use crate::eval::drift::DriftEvent;
use crate::eval::{Applied, Engine};
use crate::policy::PolicySet;
use crate::policy::Severity;
use crate::store::prelude::*;
use crate::store::{Batch, StoreError};
use crate::tasks::alerting::Alerting;

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
    /// Every stored batch is a link of this chain (sealed by the task that
    /// stores the batch; one batch is in flight at a time, so in order).
    pub chain: Arc<std::sync::Mutex<crate::evidence::Chain>>,
    /// Posture is first read when partitions are assigned (a consumer
    /// group): the waivers that started or ended while the collector was
    /// down are applied then, over that posture.
    pub waivers_after_restore: bool,
    /// Batches put in flight so far: the batch being filled is the next.
    flushed: u64,
    /// Assets alerting was told this collector processes (since the last
    /// reassignment, which makes it forget them).
    pub(super) owned: std::collections::HashSet<String>,
    /// `evaluation.evict_after_secs`.
    evict_after: Option<chrono::Duration>,
    /// A few rows of the last batch the store took (see [`persist`]).
    sample: Arc<std::sync::Mutex<Option<Arc<Batch>>>>,
}

/// A batch being filled, then stored. Its violation alerts were sent as
/// its records were evaluated; its drift alerts are sent once it is stored.
pub struct Pending {
    pub batch: Batch,
    /// Attributed and added to the batch at [`Pipeline::flush`].
    pub drifts: Vec<DriftEvent>,
    /// Alerts were raised from it: it is stored even with no rows (the
    /// notification log waits for it).
    pub raised: bool,
    /// When the batch's first record was processed.
    pub first_at: Option<std::time::Instant>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.batch.rows() == 0 && self.drifts.is_empty() && !self.raised
    }
}

impl Pipeline {
    /// Builds the pipeline; posture is restored by the caller
    /// ([`Self::restore_posture`]) or at the first partition assignment,
    /// before any record is evaluated, so that a restart raises no false
    /// alerts.
    pub async fn start(
        policies: Arc<PolicySet>,
        store: SharedStore,
        alerting: Alerting,
        cfg: &EvaluationConfig,
        drift_min_severity: Option<Severity>,
        chain_id: Option<String>,
    ) -> Result<Self, StoreError> {
        let mut engine = Engine::new(policies, cfg.attribution_window()).with_unknown_after(cfg.unknown_after()).confirming(true);
        if cfg.threads() > 1 {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads()).thread_name(|i| format!("driftwatch-eval-{i}")).build();
            match pool {
                Ok(pool) => engine = engine.with_pool(Arc::new(pool)),
                // Only when the system refuses threads: slower, not wrong.
                Err(e) => tracing::warn!(error = %e, "could not start the evaluation threads; evaluating on the consumer loop's thread"),
            }
        }
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
        let chain = Arc::new(std::sync::Mutex::new(chain));
        Ok(Pipeline {
            engine,
            store,
            alerting,
            drift_min_severity,
            live: Default::default(),
            chain,
            waivers_after_restore: false,
            flushed: 0,
            owned: Default::default(),
            evict_after: cfg.evict_after(),
            sample: Default::default(),
        })
    }

    /// Replaces the engine's posture, and the labels of assets it has no
    /// facts of, by the store's (at start, and after a consumer-group
    /// rebalance, before any record of a newly assigned partition is
    /// evaluated).
    pub async fn restore_posture(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let restored = self.store.load_posture().await?;
        let labels = self.store.asset_labels().await?;
        let read = started.elapsed();
        let (entries, assets) = (restored.len(), labels.len());
        self.engine.replace_posture(restored.into_iter().map(crate::eval::PostureEntry::from_stored), labels);
        tracing::info!(
            entries,
            assets,
            read_ms = read.as_millis() as u64,
            applied_ms = (started.elapsed() - read).as_millis() as u64,
            "restored posture from the store"
        );
        Ok(())
    }

    /// Whether a snapshot stores what it changes only (the engine then
    /// confirms an unchanged full snapshot instead of evaluating it).
    pub fn compact_snapshots(&mut self, on: bool) {
        self.engine.set_confirming(on);
    }

    pub fn new_pending() -> Pending {
        Pending { batch: Batch::new(), drifts: Vec::new(), raised: false, first_at: None }
    }

    /// Evaluates one message into the pending batch; the rows it brings
    /// are noted as its (the batch's next record: see [`persist`]).
    pub fn process(&mut self, msg: &Message, pending: &mut Pending) {
        let start = pending.batch.counts(pending.drifts.len());
        self.evaluate(msg, pending);
        let end = pending.batch.counts(pending.drifts.len());
        pending.batch.records.push(crate::store::RecordRows { start, end });
    }

    fn evaluate(&mut self, msg: &Message, pending: &mut Pending) {
        let now = Utc::now();
        pending.first_at.get_or_insert_with(std::time::Instant::now);
        if !self.owned.contains(msg.asset_id()) {
            // Before its alerts: they are this collector's to send.
            self.owned.insert(msg.asset_id().to_string());
            self.alerting.owned(msg.asset_id());
        }
        match msg {
            Message::Snapshot(s) => {
                let timer = crate::metrics::METRICS.evaluate_seconds.start_timer();
                let mut applied = self.engine.apply_received(s, now);
                timer.observe_duration();
                pending.batch.add_applied_snapshot(s, &now, &mut applied, self.engine.is_confirming());
                self.add(pending, applied);
            }
            Message::Audit(a) => {
                pending.batch.add_audit(a);
                let applied = self.engine.observe(msg);
                self.add(pending, applied);
            }
            Message::Sla(m) => {
                pending.batch.add_sla(m);
                let applied = self.engine.observe(msg);
                self.add(pending, applied);
            }
        }
    }

    /// Ages detection windows (resolving detections that no longer hold),
    /// and lets go of the facts of assets idle past `evict_after`.
    pub fn tick(&mut self, pending: &mut Pending) {
        let now = Utc::now();
        let applied = self.engine.tick(now);
        self.add(pending, applied);
        if let Some(after) = self.evict_after {
            let evicted = self.engine.evict_idle(now, after);
            if evicted > 0 {
                tracing::info!(evicted, held = self.engine.assets_held(), "facts of idle assets let go");
            }
        }
        crate::metrics::METRICS.assets_held.set(self.engine.assets_held() as i64);
    }

    /// Swaps in reloaded policy packs and re-evaluates every known asset.
    pub fn reload(&mut self, policies: Arc<PolicySet>, pending: &mut Pending) {
        tracing::info!(controls = policies.controls.len(), "policy packs reloaded; re-evaluating known assets");
        let applied = self.engine.replace_policies(policies, Utc::now());
        self.add(pending, applied);
    }

    /// Swaps in changed waivers: what they waive or stop waiving is
    /// evaluated again.
    pub fn replace_waivers(&mut self, waivers: Arc<crate::waiver::Waivers>, pending: &mut Pending) {
        let applied = self.engine.replace_waivers(waivers, Utc::now());
        self.add(pending, applied);
    }

    /// Adds what an evaluation applied to the batch being filled, and
    /// sends its violation alerts at once: a page does not wait for its
    /// batch to be stored (the notification log does, see
    /// [`Alerting::raising`]).
    fn add(&mut self, pending: &mut Pending, applied: Applied) {
        pending.batch.add_evaluations(applied.evaluations, &applied.transitions);
        if !applied.transitions.is_empty() {
            self.alerting.raising(self.flushed + 1);
            pending.raised = true;
            for t in &applied.transitions {
                self.alerting.send(Alert::from_transition(t, &t.asset_labels));
            }
        }
        pending.drifts.extend(applied.drifts);
    }

    /// Attributes drifts, stores the batch (retrying with backoff until
    /// the store takes it), then queues its drift alerts. Returns once the batch
    /// is durable.
    pub async fn flush(&mut self, pending: Pending) {
        if let Err(e) = self.begin_flush(pending).await {
            tracing::error!(error = %e, "the store task failed");
        }
    }

    /// Attributes drifts here (the engine holds the audit events), then
    /// hands the batch to a task that stores its rows ([`persist`]:
    /// transient failures retried with backoff; records the store refuses
    /// are returned, their rows left out), seals what was stored into the
    /// evidence chain, publishes its drift to live pages, queues its drift
    /// alerts, then stores its chain link. The consumer loop evaluates the
    /// next batch meanwhile and acknowledges this one's records once the
    /// task is done (the refused ones dead-lettered first); it keeps one
    /// batch in flight, so batches are sealed and stored in order.
    pub fn begin_flush(&mut self, mut pending: Pending) -> tokio::task::JoinHandle<Vec<persist::Refusal>> {
        if let Some(first) = pending.first_at {
            crate::metrics::METRICS.batch_wait_seconds.observe(first.elapsed().as_secs_f64());
        }
        self.engine.attribute(&mut pending.drifts);
        self.flushed += 1;
        let seq = self.flushed;
        let (store, chain, live, alerting) = (self.store.clone(), self.chain.clone(), self.live.clone(), self.alerting.clone());
        let sample = self.sample.clone();
        let min = self.drift_min_severity;
        tokio::spawn(async move {
            pending.batch.add_drifts(&pending.drifts);
            let timer = crate::metrics::METRICS.store_seconds.start_timer();
            let earlier = sample.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let stored = persist::store_rows(&*store, &pending.batch, earlier.as_deref()).await;
            timer.observe_duration();
            if !stored.whole() {
                // What is sealed, published and alerted is what was stored.
                let mut keep = stored.drifts_kept(&pending.batch, pending.drifts.len()).into_iter();
                pending.drifts.retain(|_| keep.next().unwrap_or(true));
                pending.batch = stored.of(&pending.batch);
            }
            if pending.batch.rows() > 0 {
                *sample.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(pending.batch.sample()));
            }
            // Sealed once, over the rows stored: a retried write stores the same link.
            pending.batch.link = chain.lock().unwrap_or_else(|p| p.into_inner()).seal(&pending.batch, Utc::now());
            crate::metrics::METRICS.batches_stored.inc();
            crate::metrics::METRICS.rows_stored.inc_by(pending.batch.rows() as u64);
            tracing::debug!(rows = pending.batch.rows(), batch = %pending.batch.batch_id, "batch stored");
            // Its pages may be logged now; drift, attributed, is published
            // and alerted once stored. The link only seals the rows.
            alerting.stored(seq);
            live.publish(&pending.drifts);
            for d in pending.drifts.iter().filter(|d| min.is_some_and(|min| d.evaluation.severity >= min)) {
                alerting.send(Alert::from_drift(d, &d.asset_labels));
            }
            if let Some(link) = &pending.batch.link {
                if let Err(e) = persist::until_stored(1, || store.write_link(link)).await {
                    // Ours, not a record's: `verify` will show the batch unsealed.
                    tracing::error!(error = %e, batch = %pending.batch.batch_id, "the store refused the batch's evidence link");
                }
            }
            stored.refused
        })
    }
}
