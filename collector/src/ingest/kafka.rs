//! The Kafka consumer group. One loop: fill a batch (up to
//! `batch.max_messages` or `batch.max_wait_ms`), evaluate, store, and only
//! then commit the offsets of everything in the batch (at-least-once: a
//! crash before the commit redelivers, and the store's deterministic keys
//! fold the duplicates).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::decode::{dead_letter, Origin, RecordDecoder};
use super::Pipeline;
use crate::config::BatchConfig;
use crate::config::KafkaConfig;

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Consumes until `shutdown` turns true; the batch in hand is finished and
/// committed first.
pub async fn run(
    cfg: &KafkaConfig,
    batch_cfg: &BatchConfig,
    mut pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let consumer: StreamConsumer = client_config(cfg)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
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
    let max_wait = Duration::from_millis(batch_cfg.max_wait_ms);

    while !*shutdown.borrow() {
        // Wait for the first record of a batch, or shutdown.
        let first = tokio::select! {
            r = consumer.recv() => r,
            _ = shutdown.changed() => break,
        };
        let mut pending = Pipeline::new_pending();
        let mut next_offsets: HashMap<(String, i32), i64> = HashMap::new();
        let deadline = Instant::now() + max_wait;
        let mut count = 0usize;
        let mut record = Some(first);
        while let Some(r) = record.take() {
            match r {
                Err(e) => tracing::warn!(error = %e, "Kafka consumer error"),
                Ok(m) => {
                    count += 1;
                    let origin = Origin { topic: m.topic(), partition: m.partition(), offset: m.offset() };
                    match decoder.decode(m.topic(), m.payload()) {
                        Ok(msg) => pipeline.process(&msg, &mut pending),
                        Err(reason) => {
                            // Retry the dead-letter send until it lands: its
                            // offset must not be committed before.
                            while let Err(e) =
                                dead_letter(&dlq, &cfg.topics.dead_letter, &origin, m.key(), m.payload(), &reason, &decoder.stats).await
                            {
                                tracing::error!(error = %e, "dead-letter send failed; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                    next_offsets.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
                }
            }
            if count >= batch_cfg.max_messages {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            record = tokio::time::timeout(left, consumer.recv()).await.ok();
        }
        if next_offsets.is_empty() {
            continue;
        }
        pipeline.flush(pending).await;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next_offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            // The batch is stored; a failed commit only means redelivery,
            // which the store folds.
            tracing::warn!(error = %e, "offset commit failed; records will be redelivered");
        }
    }
    tracing::info!("consumer stopped");
    Ok(())
}
