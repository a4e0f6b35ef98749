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
mod pipeline;
pub mod reload;
pub mod topics;

use std::sync::Arc;

use driftwatch_schemas::Message;

use crate::policy::PolicySet;
pub use pipeline::{Pending, Pipeline};

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
    /// A batch closes once its records brought this many rows.
    pub max_rows: usize,
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
    /// The waivers in force (see [`crate::tasks::waivers`]).
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
            if acks.len() >= opts.max_messages || pending.batch.rows() >= opts.max_rows {
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
    use chrono::Utc;
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
