//! Turning Kafka records into messages; what can't be decoded is sent to
//! the dead-letter topic with the reason, and counted. A bad record never
//! stops the collector.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_schemas::{Decoder, Message, Stream};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::TopicsConfig;

/// Maps topics to streams and decodes.
pub struct RecordDecoder {
    decoder: Decoder,
    topics: BTreeMap<String, Stream>,
}

/// Where a record came from, for dead-letter headers and logs.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl RecordDecoder {
    pub fn new(topics: &TopicsConfig) -> anyhow::Result<Self> {
        let map = BTreeMap::from([
            (topics.snapshots.clone(), Stream::Snapshots),
            (topics.audit.clone(), Stream::Audit),
            (topics.sla.clone(), Stream::Sla),
        ]);
        Ok(RecordDecoder { decoder: Decoder::new()?, topics: map })
    }

    /// Decodes a record, or says why not.
    pub fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<Message, String> {
        let stream = *self.topics.get(topic).ok_or_else(|| format!("topic {topic} is not a Driftwatch stream"))?;
        let bytes = payload.ok_or_else(|| "empty record (no payload)".to_string())?;
        let m = self.decoder.decode(stream, bytes).map_err(|e| e.to_string())?;
        count_decoded(&self.decoder, topic, bytes);
        Ok(m)
    }
}

/// Counts a decoded record, and apart those an agent of before the
/// specification's fingerprints wrote.
pub fn count_decoded(decoder: &Decoder, topic: &str, bytes: &[u8]) {
    let m = &crate::metrics::METRICS;
    m.records.with_label_values(&[topic, "decoded"]).inc();
    if decoder.is_legacy(bytes) {
        m.legacy_fingerprint_records.with_label_values(&[topic]).inc();
    }
}

/// Sends an undecodable record to the dead-letter topic, unchanged, with
/// headers saying where it came from and why it was rejected. Waits for the
/// broker's acknowledgement so the original offset may then be committed.
pub async fn dead_letter(
    producer: &FutureProducer,
    dlq_topic: &str,
    origin: &Origin<'_>,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    reason: &str,
) -> anyhow::Result<()> {
    crate::metrics::METRICS.records.with_label_values(&[origin.topic, "dead_lettered"]).inc();
    tracing::warn!(topic = origin.topic, partition = origin.partition, offset = origin.offset, %reason, "record dead-lettered");
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "driftwatch.reason", value: Some(reason) })
        .insert(Header { key: "driftwatch.topic", value: Some(origin.topic) })
        .insert(Header { key: "driftwatch.partition", value: Some(&partition) })
        .insert(Header { key: "driftwatch.offset", value: Some(&offset) });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(p) = payload {
        record = record.payload(p);
    }
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| anyhow::anyhow!("dead-letter topic {dlq_topic}: {e}"))
}
