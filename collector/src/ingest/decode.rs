//! Turning Kafka records into messages; what can't be decoded is sent to
//! the dead-letter topic with the reason, and counted. A bad record never
//! stops the collector.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_schemas::limits::{bound_times, LimitError, Limits};
use driftwatch_schemas::{Decoder, Message, Stream};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::config::TopicsConfig;
use crate::assets::AssetLabels;

/// Maps topics to streams, decodes, and holds each record to the
/// configured [`Limits`]; record times are bounded by their receipt
/// ([`bound_times`]) and, once given [`AssetLabels`], a snapshot's labels
/// are the ones that decide (`crate::assets`).
pub struct RecordDecoder {
    decoder: Decoder,
    topics: BTreeMap<String, Stream>,
    limits: Limits,
    labels: Option<AssetLabels>,
}

/// The most registry schema ids one collector reads (versions of three
/// schemas: a registry naming more is not serving Driftwatch's topics).
pub const MAX_REGISTRY_SCHEMAS: usize = 256;

/// Where a record came from, for dead-letter headers and logs.
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl RecordDecoder {
    pub fn new(topics: &TopicsConfig, limits: &Limits) -> anyhow::Result<Self> {
        let map = BTreeMap::from([
            (topics.snapshots.clone(), Stream::Snapshots),
            (topics.audit.clone(), Stream::Audit),
            (topics.sla.clone(), Stream::Sla),
        ]);
        Ok(RecordDecoder { decoder: Decoder::new()?, topics: map, limits: limits.clone(), labels: None })
    }

    /// Snapshots' asset labels are replaced by `labels`' (the host's own
    /// kept, or trusted, as configured; the operator's over them).
    pub fn with_labels(mut self, labels: AssetLabels) -> Self {
        self.labels = Some(labels);
        self
    }

    /// The registry id a record of `topic` names (Confluent's wire format)
    /// when this decoder has not been given its schema yet.
    pub fn unknown_schema_id(&self, topic: &str, payload: Option<&[u8]>) -> Option<u32> {
        let id = driftwatch_schemas::avro::confluent_schema_id(payload?)?;
        (self.topics.contains_key(topic) && !self.decoder.knows_registry_id(id)).then_some(id)
    }

    /// Reads records of `topic` naming registry id `id` with `schema` (as
    /// the registry gave it), or says why it cannot. At most
    /// [`MAX_REGISTRY_SCHEMAS`] are taken: each is kept for the process's
    /// life.
    pub fn add_registry_schema(&mut self, topic: &str, id: u32, schema: &str) -> Result<(), String> {
        let stream = *self.topics.get(topic).ok_or_else(|| format!("topic {topic} is not a Driftwatch stream"))?;
        if self.decoder.registry_ids() >= MAX_REGISTRY_SCHEMAS {
            return Err(format!(
                "schema registry id {id}: this collector already reads {MAX_REGISTRY_SCHEMAS} schema ids; restart it to read more"
            ));
        }
        self.decoder.add_registry_schema(id, stream, schema).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Decodes a record of `topic`, or says why not.
    pub fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<Message, String> {
        let stream = *self.topics.get(topic).ok_or_else(|| format!("topic {topic} is not a Driftwatch stream"))?;
        let bytes = payload.ok_or_else(|| "empty record (no payload)".to_string())?;
        self.decode_stream(stream, topic, bytes)
    }

    /// Decodes a record of `stream` (counted under `label`: its topic, or
    /// the stream's name), or says why not: over a limit (counted by
    /// limit), or not a message of the stream.
    pub fn decode_stream(&self, stream: Stream, label: &str, bytes: &[u8]) -> Result<Message, String> {
        let m = &crate::metrics::METRICS;
        let limited = |e: LimitError| {
            m.limit_violations.with_label_values(&[label, e.limit]).inc();
            e.to_string()
        };
        self.limits.check_size(bytes.len()).map_err(limited)?;
        let mut msg = self.decoder.decode(stream, bytes).map_err(|e| e.to_string())?;
        self.limits.check(&msg).map_err(limited)?;
        if let (Some(labels), Message::Snapshot(s)) = (&self.labels, &mut msg) {
            labels.apply(&mut s.asset);
        }
        if let Some(claimed) = bound_times(&mut msg, chrono::Utc::now()) {
            m.clock_skew_records.with_label_values(&[label]).inc();
            tracing::warn!(topic = label, asset = msg.asset_id(), %claimed, "record time far from its receipt; stored at its receipt");
        }
        m.records.with_label_values(&[label, "decoded"]).inc();
        if self.decoder.is_legacy(bytes) {
            m.legacy_fingerprint_records.with_label_values(&[label]).inc();
        }
        Ok(msg)
    }
}

/// How a dead letter is written: the producer, its topic, and the most
/// bytes one may carry (the producer's `message.max.bytes`).
#[derive(Clone)]
pub struct DeadLetters {
    pub producer: FutureProducer,
    pub topic: String,
    pub max_bytes: usize,
}

/// A Kafka header, owned: its key and value.
pub type OwnedHeader = (String, Vec<u8>);

/// The headers a dead letter adds: where the record came from and why it
/// was refused (`driftwatch-collector dead-letters` reads them).
pub const DEAD_LETTER_HEADERS: [&str; 6] = [
    "driftwatch.reason",
    "driftwatch.topic",
    "driftwatch.partition",
    "driftwatch.offset",
    "driftwatch.truncated",
    "driftwatch.original_size",
];

/// A record's headers, owned (at most 16, of at most 4 KiB each: what a
/// dead letter keeps of them).
pub fn headers_of(m: &impl rdkafka::Message) -> Vec<OwnedHeader> {
    use rdkafka::message::Headers as _;
    m.headers()
        .map(|h| h.iter().take(16).filter_map(|h| Some((h.key.to_string(), h.value?.get(..4096).unwrap_or(h.value?).to_vec()))).collect())
        .unwrap_or_default()
}

/// Room left in a dead letter for its key, headers and framing.
const DEAD_LETTER_OVERHEAD: usize = 16 * 1024;
/// A reason longer than this is cut (it quotes the record at times).
const REASON_MAX: usize = 4096;
/// Tries of a dead letter refused for a reason that may pass (the broker
/// away, a leader moving) before the record is skipped past regardless.
const DEAD_LETTER_TRIES: u32 = 5;

impl DeadLetters {
    /// Sends an undecodable record to the dead-letter topic with headers
    /// saying where it came from and why it was rejected, and waits for the
    /// broker's acknowledgement (so the original offset may then be
    /// committed). Never stops a partition: a record too large to copy
    /// whole goes as a truncated copy (`driftwatch.truncated`,
    /// `driftwatch.original_size`); one the topic refuses for good (too
    /// large still, no such topic, not authorized) or that keeps failing is
    /// logged, counted and skipped past.
    pub async fn send(&self, origin: &Origin<'_>, key: Option<&[u8]>, payload: Option<&[u8]>, headers: &[OwnedHeader], reason: &str) {
        let m = &crate::metrics::METRICS;
        m.records.with_label_values(&[origin.topic, "dead_lettered"]).inc();
        let reason = cut(reason, REASON_MAX);
        tracing::warn!(topic = origin.topic, partition = origin.partition, offset = origin.offset, %reason, "record dead-lettered");
        let key = key.map(|k| &k[..k.len().min(REASON_MAX)]);
        let room = self.max_bytes.saturating_sub(DEAD_LETTER_OVERHEAD);
        let original = payload.map_or(0, <[u8]>::len);
        let payload = payload.map(|p| &p[..p.len().min(room)]);
        let truncated = payload.map_or(0, <[u8]>::len) < original;
        if truncated {
            m.dead_letter_failures.with_label_values(&["too_large"]).inc();
        }
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=DEAD_LETTER_TRIES {
            let e = match self.try_send(origin, key, payload, headers, reason, truncated.then_some(original)).await {
                Ok(()) => return,
                Err(e) => e,
            };
            let permanent = is_permanent(&e);
            if permanent || attempt == DEAD_LETTER_TRIES {
                m.dead_letter_failures.with_label_values(&[if permanent { "permanent" } else { "gave_up" }]).inc();
                tracing::error!(
                    dead_letter_topic = %self.topic, topic = origin.topic, partition = origin.partition, offset = origin.offset,
                    error = %e, attempts = attempt, "dead letter not written; the record is skipped past"
                );
                return;
            }
            tracing::warn!(dead_letter_topic = %self.topic, error = %e, attempt, "dead-letter send failed; retrying");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }

    async fn try_send(
        &self,
        origin: &Origin<'_>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        original: &[OwnedHeader],
        reason: &str,
        truncated_from: Option<usize>,
    ) -> Result<(), KafkaError> {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        // The record's own headers first (its signer and signature, so that
        // a replay is taken as the asset's word), then where it came from
        // and why it was refused; a header of the record under one of
        // these names is not copied.
        let mut headers = OwnedHeaders::new();
        for (k, v) in original.iter().filter(|(k, _)| !DEAD_LETTER_HEADERS.contains(&k.as_str())) {
            headers = headers.insert(Header { key: k, value: Some(v) });
        }
        let mut headers = headers
            .insert(Header { key: "driftwatch.reason", value: Some(reason) })
            .insert(Header { key: "driftwatch.topic", value: Some(origin.topic) })
            .insert(Header { key: "driftwatch.partition", value: Some(&partition) })
            .insert(Header { key: "driftwatch.offset", value: Some(&offset) });
        let size = truncated_from.map(|n| n.to_string());
        if let Some(size) = &size {
            headers = headers
                .insert(Header { key: "driftwatch.truncated", value: Some("true") })
                .insert(Header { key: "driftwatch.original_size", value: Some(size) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
    }
}

/// Whether a produce error will recur however often it is tried.
fn is_permanent(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidTopic
                | C::MessageBatchTooLarge
                | C::UnknownTopic
                | C::PolicyViolation
                | C::InvalidArgument
        )
    )
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn refusals_that_recur_are_told_from_those_that_may_pass() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert!(is_permanent(&KafkaError::MessageProduction(C::MessageSizeTooLarge)));
        assert!(is_permanent(&KafkaError::MessageProduction(C::TopicAuthorizationFailed)));
        assert!(is_permanent(&KafkaError::MessageProduction(C::UnknownTopic)));
        assert!(!is_permanent(&KafkaError::MessageProduction(C::MessageTimedOut)));
        assert!(!is_permanent(&KafkaError::MessageProduction(C::NotLeaderForPartition)));
    }
}
