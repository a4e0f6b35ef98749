//! Shipping's settings: the Kafka producer and its topics (`kafka`), the
//! on-disk spool (`spool`). Defaults shared with the collector (brokers,
//! topic names) come from `driftwatch_schemas`.

use driftwatch_schemas::registry::RegistryConfig;
use driftwatch_schemas::settings::ClientProperties;
use driftwatch_schemas::Stream;
use serde::Deserialize;

/// The on-disk spool every message passes through on its way to Kafka
/// (`<state_dir>/spool`): it holds what the broker has not acknowledged,
/// across broker outages and agent restarts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Size bound in MiB; when it is reached the oldest undelivered
    /// messages are dropped (and counted in the heartbeat).
    pub max_mb: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_mb: 256 }
    }
}

impl SpoolConfig {
    pub fn max_bytes(&self) -> u64 {
        self.max_mb.saturating_mul(1 << 20)
    }

    /// Segments: a sixteenth of the bound, between 64 KiB and 16 MiB.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes() / 16).clamp(64 << 10, 16 << 20)
    }
}

/// Kafka producer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: TopicsConfig,
    /// Batch compression: `zstd`, `lz4`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`).
    pub properties: ClientProperties,
    /// How records are framed: `single_object` (Avro's single-object
    /// encoding) or `confluent` (Confluent's wire format, with the ids
    /// `schema_registry` gives: what Kafka Connect, ksqlDB, Flink and
    /// ClickHouse's `AvroConfluent` read).
    pub wire_format: WireFormat,
    /// The schema registry (with `wire_format: confluent`).
    pub schema_registry: RegistryConfig,
}

/// How records are framed on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    #[default]
    SingleObject,
    Confluent,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: driftwatch_schemas::DEFAULT_BROKERS.into(),
            topics: TopicsConfig::default(),
            compression: "zstd".into(),
            properties: ClientProperties::default(),
            wire_format: WireFormat::default(),
            schema_registry: RegistryConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub snapshots: String,
    pub audit: String,
    pub sla: String,
}

impl TopicsConfig {
    /// The topic of `stream`.
    pub fn of(&self, stream: Stream) -> &str {
        match stream {
            Stream::Snapshots => &self.snapshots,
            Stream::Audit => &self.audit,
            Stream::Sla => &self.sla,
        }
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            snapshots: driftwatch_schemas::Stream::Snapshots.default_topic().into(),
            audit: driftwatch_schemas::Stream::Audit.default_topic().into(),
            sla: driftwatch_schemas::Stream::Sla.default_topic().into(),
        }
    }
}
