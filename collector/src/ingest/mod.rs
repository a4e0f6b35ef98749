//! Ingest: getting agent messages into the collector. A transport is a
//! [`Source`]: [`kafka`] is the consumer group of the distributed mode,
//! [`local`] the agent's spool in the same process (single-node mode).
//! [`decode`] turns records into messages or dead letters, [`identity`]
//! refuses those not signed by their asset's key; [`run`] is the
//! one consumer loop (batch, evaluate, store, then acknowledge) and
//! [`Pipeline`] what it feeds: evaluate, gather the batch, store
//! ([`persist`]: records the store refuses are refused alone), alert.

pub mod config;
pub mod decode;
pub mod identity;
pub mod kafka;
pub mod local;
pub mod persist;
pub mod reload;
pub mod topics;

use std::sync::Arc;

use chrono::Utc;
use driftwatch_schemas::Message;

use crate::alert::model::Alert;
use crate::eval::drift::DriftEvent;
use crate::eval::{Applied, Engine};
use crate::policy::PolicySet;
use crate::policy::Severity;
use crate::store::prelude::*;
use crate::store::{Batch, StoreError};
use crate::tasks::alerting::Alerting;
use config::EvaluationConfig;

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
    owned: std::collections::HashSet<String>,
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
        let mut engine = Engine::new(policies, cfg.attribution_window()).with_unknown_after(cfg.unknown_after());
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
                pending.batch.add_snapshot(s, &now);
                let timer = crate::metrics::METRICS.evaluate_seconds.start_timer();
                let applied = self.engine.apply(s);
                timer.observe_duration();
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

/// A transport: where records come from and how they are acknowledged.
#[async_trait::async_trait]
pub trait Source: Send {
    /// What acknowledges one record (a Kafka offset, a spool position).
    type Ack: Send;

    /// The next decoded message, waiting for one; `None` when the source
    /// has ended. Cancel-safe: a message is only consumed when returned.
    async fn recv(&mut self) -> Option<(Message, Self::Ack)>;

    /// Whether this collector's share of the records changed since last
    /// asked (a rebalance): posture is then read back from the store.
    fn reassigned(&mut self) -> bool {
        false
    }

    /// Notified when [`Self::reassigned`] turns true, for a loop to notice
    /// a rebalance before the first record (`None`: it never does).
    fn reassignments(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// The records of `acks` (in receive order) are stored.
    async fn commit(&mut self, acks: Vec<Self::Ack>);

    /// The store refused the rows of the record of `ack` for what they
    /// hold ([`persist`]): it goes where undecodable records go, before its
    /// batch is acknowledged. Returns once it is there (or skipped past).
    async fn refuse(&mut self, ack: &Self::Ack, reason: &str) {
        let _ = ack;
        tracing::error!(%reason, "record refused by the store; skipped");
    }

    /// Periodic upkeep, called while idle (a Kafka source checks that the
    /// group has left no partition without an owner).
    async fn upkeep(&mut self) {}

    /// Stops (`true`) or resumes delivering records, without leaving the
    /// consumer group: the collector sheds load at its memory ceiling.
    fn pause(&mut self, _paused: bool) {}
}

/// The collector's resident memory, in bytes (Linux: `/proc/self/statm`;
/// `None` elsewhere or when it cannot be read).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf takes an integer and reads no memory.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0)?)
}

/// Whether consumption should be paused: above `limit` bytes it pauses,
/// and it resumes only below 90 % of it (so it does not flap).
pub fn over_ceiling(resident: u64, limit: u64, paused: bool) -> bool {
    if paused {
        resident.saturating_mul(10) >= limit.saturating_mul(9)
    } else {
        resident > limit
    }
}

/// How the consumer loop batches and what it watches besides records.
pub struct LoopOptions {
    pub max_messages: usize,
    /// The longest a record waits for its batch to close, unless the
    /// batch before is still being stored (see [`next_record`]).
    pub max_wait: std::time::Duration,
    /// With no batch in flight, a batch closes once no record has come
    /// for this long (see [`next_record`]).
    pub linger: std::time::Duration,
    /// How often detection windows are aged while idle (and the memory
    /// ceiling looked at).
    pub tick: std::time::Duration,
    /// Resident bytes above which consumption pauses (`None`: no ceiling).
    pub memory_limit: Option<u64>,
    /// The policy set in force (see [`reload`]); a new one is swapped in
    /// between batches.
    pub policies: tokio::sync::watch::Receiver<Arc<PolicySet>>,
    /// The waivers in force (see [`crate::waiver::runner`]).
    pub waivers: tokio::sync::watch::Receiver<Arc<crate::waiver::Waivers>>,
}

/// Consumes `source` until `shutdown` turns true (or the source ends): fill
/// a batch (up to `max_messages` or `max_wait`; early when nothing is in
/// flight and no record is ready, see [`next_record`]), evaluate, store, and only
/// then acknowledge everything in it (at-least-once: a crash before the
/// acknowledgement delivers again, and the store's deterministic keys fold
/// the duplicates). While a batch is being stored the next one is
/// evaluated; at most one is in flight. The batch in hand is finished first.
pub async fn run<S: Source>(
    mut source: S,
    opts: LoopOptions,
    mut pipeline: Pipeline,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // tokio's clock: the loop's timers are testable with paused time.
    use tokio::time::Instant;
    let (mut policies, mut waivers) = (opts.policies, opts.waivers);
    let mut ticker = tokio::time::interval(opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: InFlight<S::Ack> = None;
    let mut paused = false;
    let reassignments = source.reassignments();
    let reassignment = || async {
        match &reassignments {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };

    while !*shutdown.borrow() {
        // Wait for the first record of a batch; meanwhile acknowledge the
        // batch in flight once stored, age detections, swap in reloaded
        // policies or changed waivers, or stop.
        let first = tokio::select! {
            r = source.recv() => r,
            _ = shutdown.changed() => break,
            r = stored(&mut in_flight) => {
                acknowledge(&mut source, &mut in_flight, r?).await;
                continue;
            }
            () = reassignment() => {
                // Partitions assigned and no record yet: posture now, while
                // the consumer fetches their first records.
                take_over_idle(&mut source, &mut pipeline, &mut in_flight, &mut waivers).await?;
                continue;
            }
            _ = ticker.tick() => {
                source.upkeep().await;
                if let (Some(limit), Some(resident)) = (opts.memory_limit, opts.memory_limit.and_then(|_| resident_bytes())) {
                    let over = over_ceiling(resident, limit, paused);
                    if over != paused {
                        paused = over;
                        source.pause(paused);
                        crate::metrics::METRICS.consumption_paused.set(i64::from(paused));
                        if paused {
                            tracing::warn!(resident_mb = resident >> 20, limit_mb = limit >> 20, "memory ceiling reached: consumption paused");
                        } else {
                            tracing::info!(resident_mb = resident >> 20, "below the memory ceiling: consumption resumed");
                        }
                    }
                }
                take_over_idle(&mut source, &mut pipeline, &mut in_flight, &mut waivers).await?;
                if in_flight.is_none() {
                    // Everything received is stored: what was skipped
                    // since (dead letters) is acknowledged too.
                    source.commit(Vec::new()).await;
                }
                let mut pending = Pipeline::new_pending();
                pipeline.tick(&mut pending);
                if !pending.is_empty() {
                    finish(&mut source, &mut pipeline, &mut in_flight, pending, Vec::new()).await?;
                }
                continue;
            }
            Ok(()) = policies.changed() => {
                let set = policies.borrow_and_update().clone();
                let mut pending = Pipeline::new_pending();
                pipeline.reload(set, &mut pending);
                finish(&mut source, &mut pipeline, &mut in_flight, pending, Vec::new()).await?;
                continue;
            }
            Ok(()) = waivers.changed() => {
                let set = waivers.borrow_and_update().clone();
                let mut pending = Pipeline::new_pending();
                pipeline.replace_waivers(set, &mut pending);
                finish(&mut source, &mut pipeline, &mut in_flight, pending, Vec::new()).await?;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut pending = Pipeline::new_pending();
        let mut acks = Vec::new();
        let deadline = Instant::now() + opts.max_wait;
        // With nothing in flight, the batch closes `linger` after its first
        // record (or after the batch in flight landed).
        let mut linger_until = in_flight.is_none().then(|| Instant::now() + opts.linger);
        let mut next = Some(first);
        while let Some((msg, ack)) = next.take() {
            if source.reassigned() {
                take_over(&mut source, &mut pipeline, &mut in_flight, &mut pending, &mut acks, &mut waivers).await?;
            }
            pipeline.process(&msg, &mut pending);
            acks.push(ack);
            if acks.len() >= opts.max_messages {
                break;
            }
            next = next_record(&mut source, &mut in_flight, deadline, &mut linger_until, opts.linger).await?;
        }
        finish(&mut source, &mut pipeline, &mut in_flight, pending, acks).await?;
    }
    land(&mut source, &mut in_flight).await?;
    tracing::info!("consumer stopped");
    Ok(())
}

/// The next record for the batch being filled, or `None` to close it.
/// While a batch is in flight, records are gathered until it lands (group
/// commit: under load the store paces the batches, which grow to match);
/// with none in flight, until `linger_until` (set to `linger` from now when
/// the batch in flight lands; like Kafka's `linger.ms`, counted from the
/// start, not from the last record: a steady trickle of records does not
/// hold a batch until `deadline`). Past `deadline` only while a batch is
/// in flight: this one cannot be stored before that one lands anyway.
async fn next_record<S: Source>(
    source: &mut S,
    in_flight: &mut InFlight<S::Ack>,
    deadline: tokio::time::Instant,
    linger_until: &mut Option<tokio::time::Instant>,
    linger: std::time::Duration,
) -> anyhow::Result<Option<(Message, S::Ack)>> {
    loop {
        if in_flight.is_some() {
            // Past `deadline` too: closing now would not store this batch
            // any sooner (it would wait for that one to land), and records
            // not taken meanwhile would wait unevaluated.
            tokio::select! {
                r = source.recv() => return Ok(r),
                r = stored(in_flight) => {
                    acknowledge(source, in_flight, r?).await;
                    *linger_until = Some(tokio::time::Instant::now() + linger);
                }
            }
            continue;
        }
        // None set: the batch in flight landed elsewhere (a reassignment);
        // linger from now.
        let linger_until = *linger_until.get_or_insert_with(|| tokio::time::Instant::now() + linger);
        let left = deadline.min(linger_until).saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        return Ok(tokio::time::timeout(left, source.recv()).await.ok().flatten());
    }
}

/// The batch being stored, and the acknowledgements of its records.
type InFlight<A> = Option<(tokio::task::JoinHandle<Vec<persist::Refusal>>, Vec<A>)>;

/// Resolves when the batch in flight is stored (never when there is
/// none), with the records the store refused. Cancel-safe.
async fn stored<A>(in_flight: &mut InFlight<A>) -> anyhow::Result<Vec<persist::Refusal>> {
    match in_flight {
        // The task retries until the store takes the batch; it fails only
        // by a bug (a panic): then nothing more is acknowledged, and the
        // collector stops so that a restart delivers the batch again.
        Some((task, _)) => task.await.map_err(|e| anyhow::anyhow!("storing a batch failed: {e}")),
        None => std::future::pending().await,
    }
}

/// Acknowledges the batch in flight, once stored: the records the store
/// refused are refused first (dead-lettered), then every record is
/// acknowledged (a refused one is done with too).
async fn acknowledge<S: Source>(source: &mut S, in_flight: &mut InFlight<S::Ack>, refused: Vec<persist::Refusal>) {
    let Some((_, acks)) = in_flight.take() else { return };
    for r in &refused {
        match acks.get(r.record) {
            Some(ack) => source.refuse(ack, &r.reason).await,
            None => tracing::error!(record = r.record, reason = %r.reason, "a refused record has no acknowledgement"),
        }
    }
    source.commit(acks).await;
}

/// Waits for the batch in flight to be stored, then acknowledges it.
async fn land<S: Source>(source: &mut S, in_flight: &mut InFlight<S::Ack>) -> anyhow::Result<()> {
    if in_flight.is_some() {
        let timer = crate::metrics::METRICS.store_wait_seconds.start_timer();
        let refused = stored(in_flight).await?;
        timer.observe_duration();
        acknowledge(source, in_flight, refused).await;
    }
    Ok(())
}

/// Lands the batch in flight, then puts this one in flight.
async fn finish<S: Source>(
    source: &mut S,
    pipeline: &mut Pipeline,
    in_flight: &mut InFlight<S::Ack>,
    pending: Pending,
    acks: Vec<S::Ack>,
) -> anyhow::Result<()> {
    land(source, in_flight).await?;
    if !pending.is_empty() {
        *in_flight = Some((pipeline.begin_flush(pending), acks));
    } else if !acks.is_empty() {
        source.commit(acks).await;
    }
    Ok(())
}

/// New partitions: what is in hand is stored and acknowledged, then
/// posture is read back (it now includes what the partitions' previous
/// owner stored) before another record is evaluated; after a start, the
/// waivers that started or ended while the collector was down are applied
/// over it (into `pending`).
async fn take_over<S: Source>(
    source: &mut S,
    pipeline: &mut Pipeline,
    in_flight: &mut InFlight<S::Ack>,
    pending: &mut Pending,
    acks: &mut Vec<S::Ack>,
    waivers: &mut tokio::sync::watch::Receiver<Arc<crate::waiver::Waivers>>,
) -> anyhow::Result<()> {
    let done = std::mem::replace(pending, Pipeline::new_pending());
    finish(source, pipeline, in_flight, done, std::mem::take(acks)).await?;
    land(source, in_flight).await?;
    pipeline.alerting.reassigned();
    pipeline.owned.clear();
    restore(pipeline).await;
    if std::mem::take(&mut pipeline.waivers_after_restore) {
        pipeline.engine.forget_waivers_in_force();
        let set = waivers.borrow_and_update().clone();
        pipeline.replace_waivers(set, pending);
    }
    Ok(())
}

/// [`take_over`] between batches, if partitions were assigned (at a
/// start, the waivers are applied over the posture read).
async fn take_over_idle<S: Source>(
    source: &mut S,
    pipeline: &mut Pipeline,
    in_flight: &mut InFlight<S::Ack>,
    waivers: &mut tokio::sync::watch::Receiver<Arc<crate::waiver::Waivers>>,
) -> anyhow::Result<()> {
    if source.reassigned() {
        let (mut pending, mut acks) = (Pipeline::new_pending(), Vec::new());
        take_over(source, pipeline, in_flight, &mut pending, &mut acks, waivers).await?;
        finish(source, pipeline, in_flight, pending, acks).await?;
    }
    Ok(())
}

/// Restores posture from the store, retrying until it answers: evaluating
/// without it could raise false alerts.
async fn restore(pipeline: &mut Pipeline) {
    let mut backoff = crate::tasks::Backoff::default();
    while let Err(e) = pipeline.restore_posture().await {
        tracing::error!(error = %e, retry_in_ms = backoff.next_wait().as_millis() as u64, "restoring posture after a rebalance failed");
        backoff.wait().await;
    }
}

#[cfg(test)]
mod ceiling_tests {
    use super::*;

    #[test]
    fn the_ceiling_pauses_above_the_limit_and_resumes_below_nine_tenths() {
        assert!(!over_ceiling(100, 100, false));
        assert!(over_ceiling(101, 100, false));
        assert!(over_ceiling(95, 100, true), "still paused between 90 % and the limit");
        assert!(!over_ceiling(89, 100, true));
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20), "this process has a resident size");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A source with a record every 2 ms, forever.
    struct Trickle;

    #[async_trait::async_trait]
    impl Source for Trickle {
        type Ack = ();
        async fn recv(&mut self) -> Option<(Message, ())> {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let snapshot = driftwatch_schemas::ConfigSnapshot {
                asset: driftwatch_schemas::Asset {
                    id: "a".into(),
                    kind: driftwatch_schemas::AssetKind::Host,
                    hostname: "h".into(),
                    labels: Default::default(),
                },
                agent_id: "ag".into(),
                agent_version: "0".into(),
                snapshot_id: "s".into(),
                sequence: 1,
                collected_at: Utc::now(),
                kind: driftwatch_schemas::SnapshotKind::Delta,
                facts: vec![],
                removed_paths: vec![],
            };
            Some((Message::Snapshot(snapshot), ()))
        }
        async fn commit(&mut self, _: Vec<()>) {}
    }

    /// With nothing being stored, a batch closes `linger` after its first
    /// record even though records keep coming (not at `max_wait`).
    #[tokio::test(start_paused = true)]
    async fn a_trickle_does_not_hold_a_batch_open() {
        let (mut source, mut in_flight): (Trickle, InFlight<()>) = (Trickle, None);
        let linger = Duration::from_millis(10);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(500);
        let mut linger_until = Some(start + linger);
        let mut records = 0;
        while next_record(&mut source, &mut in_flight, deadline, &mut linger_until, linger).await.unwrap().is_some() {
            records += 1;
        }
        assert!(start.elapsed() <= linger + Duration::from_millis(2), "closed after {:?}", start.elapsed());
        assert!((3..=5).contains(&records), "{records} records");
        // The batch in flight landed before the loop looked (no linger set).
        let start = Instant::now();
        let mut linger_until = None;
        while next_record(&mut source, &mut in_flight, start + Duration::from_millis(500), &mut linger_until, linger)
            .await
            .unwrap()
            .is_some()
        {}
        assert!(start.elapsed() <= linger + Duration::from_millis(2), "closed after {:?}", start.elapsed());
    }

    /// While a batch is being stored the next one fills past `max_wait`
    /// (it could not be stored sooner), and closes as soon as the batch
    /// in flight landed.
    #[tokio::test(start_paused = true)]
    async fn a_slow_store_does_not_stop_the_next_batch_filling() {
        let store = Duration::from_millis(300);
        let mut in_flight: InFlight<()> = Some((
            tokio::spawn(async move {
                tokio::time::sleep(store).await;
                Vec::new()
            }),
            vec![()],
        ));
        let mut source = Trickle;
        let start = Instant::now();
        let mut linger_until = None;
        let mut records = 0;
        while next_record(&mut source, &mut in_flight, start + Duration::from_millis(100), &mut linger_until, Duration::from_millis(10))
            .await
            .unwrap()
            .is_some()
        {
            records += 1;
        }
        assert!(in_flight.is_none(), "the batch in flight landed and was acknowledged");
        let closed = start.elapsed();
        assert!(closed >= store && closed <= store + Duration::from_millis(3), "closed after {closed:?}");
        assert!(records >= 150, "records kept coming in while the store worked: {records}");
    }
}
