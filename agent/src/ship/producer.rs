//! The Kafka producer: redacts (see `redact.rs`), then idempotent, `acks=all`, keyed by asset id so each
//! asset's messages stay in order on one partition. Messages are encoded
//! here (Avro single-object encoding) and sent one at a time in arrival
//! order; a failed send is retried with backoff, never skipped.

use std::time::Duration;

use driftwatch_schemas::{Encoder, Message, Stream};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

use crate::config::KafkaConfig;
use crate::redact::Redactor;

pub fn producer(cfg: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "30000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create().map_err(|e| anyhow::anyhow!("Kafka producer for {}: {e}", cfg.brokers))
}

fn topic(cfg: &KafkaConfig, s: Stream) -> &str {
    match s {
        Stream::Snapshots => &cfg.topics.snapshots,
        Stream::Audit => &cfg.topics.audit,
        Stream::Sla => &cfg.topics.sla,
    }
}

/// Redacts, encodes and sends every message from `rx` until it closes.
pub async fn run(cfg: KafkaConfig, producer: FutureProducer, redactor: Redactor, mut rx: mpsc::Receiver<Message>) -> anyhow::Result<()> {
    let mut encoder = Encoder::new()?;
    while let Some(mut msg) = rx.recv().await {
        // The one place every message passes: nothing leaves unredacted.
        redactor.message(&mut msg);
        let payload = match encoder.encode(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, stream = ?msg.stream(), "cannot encode message; dropped");
                continue;
            }
        };
        let topic = topic(&cfg, msg.stream());
        let key = msg.asset_id();
        let mut wait = Duration::from_millis(200);
        loop {
            let record = FutureRecord::to(topic).key(key).payload(&payload);
            match producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err((e, _)) => {
                    tracing::warn!(%topic, error = %e, retry_in_ms = wait.as_millis() as u64, "send failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
    Ok(())
}
