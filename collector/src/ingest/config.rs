//! Ingest's settings: the Kafka consumer and its topics (`kafka`), how
//! records are batched (`batch`), and continuous evaluation
//! (`evaluation`). Defaults shared with the agent (brokers, topic names)
//! come from `driftwatch_schemas`.

use driftwatch_schemas::settings::ClientProperties;
use driftwatch_schemas::Stream;
use serde::Deserialize;

/// Kafka consumer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Consumer group; every collector of one deployment uses the same.
    pub group_id: String,
    pub topics: TopicsConfig,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`).
    pub properties: ClientProperties,
    /// The schema registry that records in Confluent's wire format name
    /// their writer schema in (agents with `kafka.wire_format:
    /// confluent`). Without one, such records are dead-lettered.
    pub schema_registry: driftwatch_schemas::registry::RegistryConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: driftwatch_schemas::DEFAULT_BROKERS.into(),
            group_id: "driftwatch-collector".into(),
            topics: TopicsConfig::default(),
            properties: ClientProperties::default(),
            schema_registry: Default::default(),
        }
    }
}

/// Topic names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub snapshots: String,
    pub audit: String,
    pub sla: String,
    /// Where undecodable messages go, with the reason in a header.
    pub dead_letter: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            snapshots: Stream::Snapshots.default_topic().into(),
            audit: Stream::Audit.default_topic().into(),
            sla: Stream::Sla.default_topic().into(),
            dead_letter: driftwatch_schemas::DEAD_LETTER_TOPIC.into(),
        }
    }
}

/// How many messages make a batch, and how long one may wait. A batch is
/// stored while the next one fills (group commit): under load batches
/// grow to what the store takes; when the store is idle a batch closes
/// `linger_ms` after its first record (like Kafka's `linger.ms`). Pages do
/// not wait for their batch, so the default linger (a second) favours
/// fewer, larger inserts: each batch adds a part to every table it writes,
/// and ClickHouse asks for about one insert a second per table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_messages: usize,
    /// A batch also closes once its records brought this many rows: what
    /// a batch holds in memory is bounded by rows, not by the fleet (a
    /// new host's first full snapshot is ~600 rows; 5,000 of them at once
    /// held three million).
    pub max_rows: usize,
    pub max_wait_ms: u64,
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_messages: 5_000, max_rows: 100_000, max_wait_ms: 1_000, linger_ms: 1_000 }
    }
}

/// Continuous evaluation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// How far before a drift an audit event may be and still be named as
    /// its likely cause.
    pub attribution_window_secs: u64,
    /// How often detection windows are aged (and detections resolved) when
    /// no records arrive.
    pub tick_ms: u64,
    /// Reload the policy packs when a file under `policies` changes.
    pub reload_policies: bool,
    /// How often compliance scores are recorded for the dashboards.
    pub score_interval_secs: u64,
    /// An asset with neither a snapshot nor a heartbeat for this long has
    /// its results marked `unknown` (0: never). Keep it above the agents'
    /// full-snapshot and heartbeat intervals.
    pub unknown_after_secs: u64,
    /// How often silent assets are looked for.
    pub evidence_check_secs: u64,
    /// The facts of an asset not seen for this long are let go (its
    /// posture is kept; it comes back as after a restart). 0: never. Keep
    /// it above `unknown_after_secs`.
    pub evict_after_secs: u64,
    /// Resident memory (MiB) above which the collector pauses consumption
    /// (it stays in its consumer group) until it is back under 90 % of it,
    /// rather than being killed for its memory. 0: no ceiling.
    pub memory_limit_mb: u64,
    /// Threads a full evaluation (a full snapshot's controls, a policy
    /// reload) is shared out over; 0: one per core, 1: the consumer loop's
    /// own thread only. Deltas run on the loop's thread.
    pub threads: usize,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            attribution_window_secs: 600,
            tick_ms: 5_000,
            reload_policies: true,
            score_interval_secs: 300,
            unknown_after_secs: 7_200,
            evidence_check_secs: 60,
            evict_after_secs: 3 * 86_400,
            memory_limit_mb: 0,
            threads: 0,
        }
    }
}

impl EvaluationConfig {
    pub fn attribution_window(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.attribution_window_secs.min(i64::MAX as u64) as i64)
    }

    /// `threads`, with 0 read as the number of cores.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// `unknown_after_secs` as a duration (`None`: off).
    pub fn evict_after(&self) -> Option<chrono::Duration> {
        (self.evict_after_secs > 0).then(|| chrono::Duration::seconds(self.evict_after_secs.min(i64::MAX as u64 / 1000) as i64))
    }

    pub fn unknown_after(&self) -> Option<chrono::Duration> {
        (self.unknown_after_secs > 0).then(|| chrono::Duration::seconds(self.unknown_after_secs.min(i64::MAX as u64 / 1000) as i64))
    }
}
