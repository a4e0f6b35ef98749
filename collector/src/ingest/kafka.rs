//! The Kafka consumer group. One loop: fill a batch (up to
//! `batch.max_messages` or `batch.max_wait_ms`), evaluate, store, and only
//! then commit the offsets of everything in the batch (at-least-once: a
//! crash before the commit redelivers, and the store's deterministic keys
//! fold the duplicates).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::decode::{dead_letter, Origin, RecordDecoder};
use super::{Pending, Pipeline};
use crate::config::{BatchConfig, KafkaConfig};
use crate::policy::PolicySet;
use crate::waiver::Waivers;

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Notes partition assignments, so that the loop restores posture before
/// it evaluates a record of a newly assigned partition.
struct RebalanceContext {
    assigned: AtomicBool,
    /// Partition 0 of this topic decides who runs fleet-wide work (SLOs).
    leader_topic: String,
    leader: Arc<AtomicBool>,
}

impl ClientContext for RebalanceContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer
    /// lag per assigned partition, for `/metrics`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                // -1 is librdkafka's internal unassigned partition; a
                // negative lag means not known yet.
                if *id >= 0 && p.consumer_lag >= 0 {
                    crate::metrics::METRICS.consumer_lag.with_label_values(&[name.as_str(), &id.to_string()]).set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                self.assigned.store(true, Ordering::SeqCst);
                if tpl.elements().iter().any(|e| e.topic() == self.leader_topic && e.partition() == 0) {
                    tracing::info!(topic = %self.leader_topic, "this collector now runs fleet-wide work (SLOs)");
                    self.leader.store(true, Ordering::SeqCst);
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                if tpl.elements().iter().any(|e| e.topic() == self.leader_topic && e.partition() == 0) {
                    self.leader.store(false, Ordering::SeqCst);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

type Offsets = HashMap<(String, i32), i64>;

/// What the consumer loop needs besides the pipeline.
pub struct Options<'a> {
    pub kafka: &'a KafkaConfig,
    pub batch: &'a BatchConfig,
    /// How often detection windows are aged while idle.
    pub tick: Duration,
    /// The policy set in force (see [`super::reload`]); a new one is
    /// swapped in between batches.
    pub policies: watch::Receiver<Arc<PolicySet>>,
    /// The waivers in force (see [`crate::waiver::runner`]).
    pub waivers: watch::Receiver<Arc<Waivers>>,
    /// Set while this collector owns partition 0 of the SLA topic.
    pub leader: Arc<AtomicBool>,
}

/// Consumes until `shutdown` turns true; the batch in hand is finished and
/// committed first.
pub async fn run(opts: Options<'_>, mut pipeline: Pipeline, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let cfg = opts.kafka;
    let consumer: StreamConsumer<RebalanceContext> = client_config(cfg)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "10000")
        .create_with_context(RebalanceContext {
            assigned: AtomicBool::new(false),
            leader_topic: cfg.topics.sla.clone(),
            leader: opts.leader.clone(),
        })
        .map_err(|e| anyhow::anyhow!("Kafka consumer for {}: {e}", cfg.brokers))?;
    let dlq: FutureProducer = client_config(cfg)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| anyhow::anyhow!("Kafka dead-letter producer for {}: {e}", cfg.brokers))?;
    let topics = [cfg.topics.snapshots.as_str(), cfg.topics.audit.as_str(), cfg.topics.sla.as_str()];
    consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("subscribing to {topics:?}: {e}"))?;
    tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, ?topics, "consuming");
    let decoder = RecordDecoder::new(&cfg.topics)?;
    let max_wait = Duration::from_millis(opts.batch.max_wait_ms);
    let (mut policies, mut waivers) = (opts.policies, opts.waivers);
    let mut ticker = tokio::time::interval(opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    while !*shutdown.borrow() {
        // Wait for the first record of a batch; meanwhile age detections,
        // swap in reloaded policies or changed waivers, or stop.
        let first = tokio::select! {
            r = consumer.recv() => r,
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                let mut pending = Pipeline::new_pending();
                pipeline.tick(&mut pending);
                if !pending.is_empty() {
                    pipeline.flush(pending).await;
                }
                continue;
            }
            Ok(()) = policies.changed() => {
                let set = policies.borrow_and_update().clone();
                let mut pending = Pipeline::new_pending();
                pipeline.reload(set, &mut pending);
                pipeline.flush(pending).await;
                continue;
            }
            Ok(()) = waivers.changed() => {
                let set = waivers.borrow_and_update().clone();
                let mut pending = Pipeline::new_pending();
                pipeline.replace_waivers(set, &mut pending);
                pipeline.flush(pending).await;
                continue;
            }
        };
        let mut pending = Pipeline::new_pending();
        let mut next_offsets = Offsets::new();
        let deadline = Instant::now() + max_wait;
        let mut count = 0usize;
        let mut record = Some(first);
        while let Some(r) = record.take() {
            match r {
                Err(e) => tracing::warn!(error = %e, "Kafka consumer error"),
                Ok(m) => {
                    if consumer.context().assigned.swap(false, Ordering::SeqCst) {
                        // New partitions: what is in hand is stored and
                        // committed, then posture is read back (it now
                        // includes what the partitions' previous owner
                        // stored) before this record is evaluated.
                        let done = std::mem::replace(&mut pending, Pipeline::new_pending());
                        finish(&consumer, &mut pipeline, done, std::mem::take(&mut next_offsets)).await;
                        pipeline.alerting.reassigned();
                        restore(&mut pipeline).await;
                    }
                    count += 1;
                    let origin = Origin { topic: m.topic(), partition: m.partition(), offset: m.offset() };
                    match decoder.decode(m.topic(), m.payload()) {
                        Ok(msg) => pipeline.process(&msg, &mut pending),
                        Err(reason) => {
                            // Retry the dead-letter send until it lands: its
                            // offset must not be committed before.
                            while let Err(e) = dead_letter(&dlq, &cfg.topics.dead_letter, &origin, m.key(), m.payload(), &reason).await {
                                tracing::error!(error = %e, "dead-letter send failed; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                    next_offsets.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                }
            }
            if count >= opts.batch.max_messages {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            record = tokio::time::timeout(left, consumer.recv()).await.ok();
        }
        finish(&consumer, &mut pipeline, pending, next_offsets).await;
    }
    tracing::info!("consumer stopped");
    Ok(())
}

/// Stores the batch, then commits the offsets of every record in it.
async fn finish(consumer: &StreamConsumer<RebalanceContext>, pipeline: &mut Pipeline, pending: Pending, offsets: Offsets) {
    if offsets.is_empty() && pending.is_empty() {
        return;
    }
    pipeline.flush(pending).await;
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(error = %e, topic, partition, "cannot commit this offset");
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        // The batch is stored; a failed commit (e.g. the partition was
        // revoked meanwhile) only means redelivery, which the store folds.
        tracing::warn!(error = %e, "offset commit failed; records will be redelivered");
    }
}

/// Restores posture from the store, retrying until it answers: evaluating
/// without it could raise false alerts.
async fn restore(pipeline: &mut Pipeline) {
    let mut wait = Duration::from_millis(250);
    while let Err(e) = pipeline.restore_posture().await {
        tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64, "restoring posture after a rebalance failed");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
