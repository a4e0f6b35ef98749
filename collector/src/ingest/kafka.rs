//! The Kafka consumer group as a [`Source`]: records decoded (or sent to
//! the dead-letter topic with the reason), their offsets committed once
//! the consumer loop ([`super::run`]) stored their batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message as _, TopicPartitionList};
use tokio::sync::watch;

use super::decode::{dead_letter, Origin, RecordDecoder};
use super::{LoopOptions, Pipeline, Source};
use crate::config::KafkaConfig;

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // Alerts wait for the fetch that brings their record: a broker that
    // holds a fetch for its whole wait even when records arrive (tansu
    // does) would add librdkafka's default 500 ms to every alert.
    c.set("fetch.wait.max.ms", "100");
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

/// A record the collector could not decode, waiting for the dead-letter
/// topic to take it (kept across a cancelled `recv`).
struct DeadLetter {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    reason: String,
}

/// The consumer group as a [`Source`].
pub struct KafkaSource {
    consumer: StreamConsumer<RebalanceContext>,
    dlq: FutureProducer,
    dlq_topic: String,
    decoder: RecordDecoder,
    dead: Option<DeadLetter>,
    /// Offsets after dead-lettered records, committed with the next batch.
    dead_offsets: HashMap<(String, i32), i64>,
}

/// A record's place: committed as the offset after it.
pub struct Offset {
    topic: String,
    partition: i32,
    next: i64,
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to the three streams.
    pub fn connect(cfg: &KafkaConfig, leader: Arc<AtomicBool>) -> anyhow::Result<Self> {
        let consumer: StreamConsumer<RebalanceContext> = client_config(cfg)
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "10000")
            .create_with_context(RebalanceContext { assigned: AtomicBool::new(false), leader_topic: cfg.topics.sla.clone(), leader })
            .map_err(|e| anyhow::anyhow!("Kafka consumer for {}: {e}", cfg.brokers))?;
        let dlq: FutureProducer = client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| anyhow::anyhow!("Kafka dead-letter producer for {}: {e}", cfg.brokers))?;
        let topics = [cfg.topics.snapshots.as_str(), cfg.topics.audit.as_str(), cfg.topics.sla.as_str()];
        consumer.subscribe(&topics).map_err(|e| anyhow::anyhow!("subscribing to {topics:?}: {e}"))?;
        tracing::info!(brokers = %cfg.brokers, group = %cfg.group_id, ?topics, "consuming");
        Ok(KafkaSource {
            consumer,
            dlq,
            dlq_topic: cfg.topics.dead_letter.clone(),
            decoder: RecordDecoder::new(&cfg.topics)?,
            dead: None,
            dead_offsets: HashMap::new(),
        })
    }

    /// Sends the pending dead letter until the topic takes it: its offset
    /// must not be committed before.
    async fn send_dead_letter(&mut self) {
        let Some(d) = &self.dead else { return };
        let origin = Origin { topic: &d.topic, partition: d.partition, offset: d.offset };
        while let Err(e) = dead_letter(&self.dlq, &self.dlq_topic, &origin, d.key.as_deref(), d.payload.as_deref(), &d.reason).await {
            tracing::error!(error = %e, "dead-letter send failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.dead_offsets.insert((d.topic.clone(), d.partition), d.offset + 1);
        self.dead = None;
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    type Ack = Offset;

    async fn recv(&mut self) -> Option<(driftwatch_schemas::Message, Offset)> {
        loop {
            self.send_dead_letter().await;
            let m = match self.consumer.recv().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka consumer error");
                    continue;
                }
            };
            match self.decoder.decode(m.topic(), m.payload()) {
                Ok(msg) => return Some((msg, Offset { topic: m.topic().to_string(), partition: m.partition(), next: m.offset() + 1 })),
                Err(reason) => {
                    self.dead = Some(DeadLetter {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        reason,
                    })
                }
            }
        }
    }

    fn reassigned(&mut self) -> bool {
        self.consumer.context().assigned.swap(false, Ordering::SeqCst)
    }

    async fn commit(&mut self, acks: Vec<Offset>) {
        let mut offsets = std::mem::take(&mut self.dead_offsets);
        for a in acks {
            let o = offsets.entry((a.topic, a.partition)).or_insert(a.next);
            *o = (*o).max(a.next);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset)) {
                tracing::warn!(error = %e, topic, partition, "cannot commit this offset");
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
            // The batch is stored; a failed commit (e.g. the partition was
            // revoked meanwhile) only means redelivery, which the store folds.
            tracing::warn!(error = %e, "offset commit failed; records will be redelivered");
        }
    }
}

/// Consumes the configured topics until `shutdown` turns true.
pub async fn run(
    cfg: &KafkaConfig,
    opts: LoopOptions,
    leader: Arc<AtomicBool>,
    pipeline: Pipeline,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    super::run(KafkaSource::connect(cfg, leader)?, opts, pipeline, shutdown).await
}
