//! Collector configuration: one YAML file, overridable by environment
//! variables `DRIFTWATCH_COLLECTOR__SECTION__KEY` (see
//! `driftwatch_schemas::settings`). Every field has a default that works
//! with `deploy/local/services`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alert::mute::{InhibitRule, MaintenanceWindow};
use crate::alert::receivers::ReceiverConfig;
use crate::alert::route::{Route, RouteConfig};
pub use crate::store::config::{ClickHouseConfig, StoreConfig, StoreKind};

/// The whole collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    /// Which store keeps the data.
    pub store: StoreConfig,
    /// Directory of policy packs. Left at its default (`policies`) and
    /// absent, the packs installed beside the binary or embedded in it are
    /// used ([`crate::policy::bundled`]).
    pub policies: PathBuf,
    /// Where `policies` was found (set at load, not read from the file).
    #[serde(skip)]
    pub policies_origin: Option<crate::policy::bundled::Origin>,
    pub batch: BatchConfig,
    pub evaluation: EvaluationConfig,
    pub alerts: AlertsConfig,
    /// Service-level objectives over the agents' probe results.
    pub slo: crate::slo::runner::SloSettings,
    /// The HTTP API.
    pub api: crate::api::ApiConfig,
    /// Waivers: how often they are re-read, when expiry is reminded.
    pub waivers: crate::waiver::runner::WaiverSettings,
    pub evidence: EvidenceConfig,
    /// How long each table keeps its data.
    pub retention: crate::store::retention::RetentionConfig,
    /// Bounds on what one record may hold; a record over one is
    /// dead-lettered (`driftwatch_schemas::limits`).
    pub limits: driftwatch_schemas::limits::Limits,
    /// Agent identity: how keys are pinned, whether unsigned records pass.
    pub identity: crate::identity::IdentityConfig,
    /// Assets' labels: the operator's, and whether a host's own are trusted.
    pub assets: crate::assets::AssetsConfig,
}

/// The evidence chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// This collector's chain. Unset: a new chain per process (host name and
    /// start time). Set (unique per collector, e.g. the StatefulSet pod
    /// name): the chain continues across restarts.
    pub chain_id: Option<String>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            store: StoreConfig::default(),
            policies: PathBuf::from(crate::policy::bundled::DEFAULT_DIR),
            policies_origin: None,
            batch: BatchConfig::default(),
            evaluation: EvaluationConfig::default(),
            alerts: AlertsConfig::default(),
            slo: Default::default(),
            api: Default::default(),
            waivers: Default::default(),
            evidence: Default::default(),
            retention: Default::default(),
            limits: Default::default(),
            identity: Default::default(),
            assets: Default::default(),
        }
    }
}

/// Kafka consumer settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated bootstrap servers.
    pub brokers: String,
    /// Consumer group; every collector of one deployment uses the same.
    pub group_id: String,
    pub topics: TopicsConfig,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "driftwatch-collector".into(),
            topics: TopicsConfig::default(),
            properties: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("properties", &driftwatch_schemas::settings::masked(&self.properties))
            .finish()
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
            snapshots: "driftwatch.snapshots".into(),
            audit: "driftwatch.audit".into(),
            sla: "driftwatch.sla".into(),
            dead_letter: "driftwatch.dead-letter".into(),
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
    pub max_wait_ms: u64,
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_messages: 5_000, max_wait_ms: 1_000, linger_ms: 1_000 }
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

/// Alerting: receivers, the routing tree, inhibition and maintenance
/// windows (silences live in the store; see `driftwatch-collector silence`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Base URL of the collector's UI, for links in notifications.
    pub external_url: String,
    /// Drift events of at least this severity become alerts (`null`: none).
    pub drift_min_severity: Option<crate::policy::Severity>,
    pub receivers: Vec<ReceiverConfig>,
    /// The routing tree; without one, every receiver gets every alert.
    pub route: Option<RouteConfig>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// How often silences are re-read from the store.
    pub silence_refresh_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            external_url: "http://127.0.0.1:8080".into(),
            drift_min_severity: Some(crate::policy::Severity::High),
            receivers: Vec::new(),
            route: None,
            inhibit_rules: Vec::new(),
            maintenance_windows: Vec::new(),
            silence_refresh_secs: 10,
        }
    }
}

impl AlertsConfig {
    /// The routing tree: the configured one, or one that sends every alert
    /// to every receiver (grouped by asset).
    pub fn route_config(&self) -> Option<RouteConfig> {
        if let Some(r) = &self.route {
            return Some(r.clone());
        }
        let (first, rest) = self.receivers.split_first()?;
        Some(RouteConfig {
            receiver: Some(first.name.clone()),
            group_by: Some(vec!["asset".into()]),
            routes: rest
                .iter()
                .map(|r| RouteConfig { receiver: Some(r.name.clone()), continue_matching: true, ..Default::default() })
                .collect(),
            ..Default::default()
        })
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            problems.extend(r.validate(&format!("alerts.receivers[{i}]")));
            if !names.insert(r.name.clone()) {
                problems.push(format!("alerts.receivers[{i}].name: {:?} is used twice", r.name));
            }
        }
        if let Some(route) = self.route_config() {
            let names: Vec<String> = names.into_iter().collect();
            if let Err(errors) = Route::compile(&route, &names) {
                problems.extend(errors);
            }
        } else if self.route.is_some() {
            problems.push("alerts.route: no receivers are configured".into());
        }
        for (i, w) in self.maintenance_windows.iter().enumerate() {
            problems.extend(w.validate(&format!("alerts.maintenance_windows[{i}]")));
        }
        if reqwest::Url::parse(&self.external_url).is_err() {
            problems.push(format!("alerts.external_url: {:?} is not a URL", self.external_url));
        }
        if self.silence_refresh_secs == 0 {
            problems.push("alerts.silence_refresh_secs: must be at least 1".into());
        }
    }
}

impl CollectorConfig {
    /// Loads and validates the configuration.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with_policies(path, None)
    }

    /// Loads and validates the configuration, with `policies` (a command
    /// line's `--policies`) over the file's and the environment's, and
    /// locates the packs ([`crate::policy::bundled::locate`]).
    pub fn load_with_policies(path: Option<&Path>, policies: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg: CollectorConfig = driftwatch_schemas::settings::load(path, "DRIFTWATCH_COLLECTOR", std::env::vars())?;
        if let Some(p) = policies {
            cfg.policies = p.to_path_buf();
        }
        cfg.validate()?;
        let (dir, origin) = crate::policy::bundled::locate(&cfg.policies)
            .map_err(|e| anyhow::anyhow!("policies: unpacking the packs embedded in the binary: {e}"))?;
        (cfg.policies, cfg.policies_origin) = (dir, Some(origin));
        Ok(cfg)
    }

    /// `policies` as a person reads it: the folder and where it came from.
    pub fn policies_source(&self) -> String {
        match &self.policies_origin {
            Some(o) if *o != crate::policy::bundled::Origin::Configured => format!("{} ({o})", self.policies.display()),
            _ => self.policies.display().to_string(),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut problems = self.limits.problems();
        if self.kafka.brokers.trim().is_empty() {
            problems.push("kafka.brokers: must name at least one broker".to_string());
        }
        if self.batch.max_messages == 0 {
            problems.push("batch.max_messages: must be at least 1".to_string());
        }
        if self.evaluation.score_interval_secs == 0 {
            problems.push("evaluation.score_interval_secs: must be at least 1".to_string());
        }
        if self.evaluation.tick_ms == 0 {
            problems.push("evaluation.tick_ms: must be at least 1".to_string());
        }
        if self.evaluation.evidence_check_secs == 0 {
            problems.push("evaluation.evidence_check_secs: must be at least 1".to_string());
        }
        if self.waivers.refresh_secs == 0 {
            problems.push("waivers.refresh_secs: must be at least 1".to_string());
        }
        if self.store.kind == StoreKind::Sqlite && self.store.sqlite_path.as_os_str().is_empty() {
            problems.push("store.sqlite_path: must name a file".to_string());
        }
        if !(self.clickhouse.url.starts_with("http://") || self.clickhouse.url.starts_with("https://")) {
            problems.push(format!("clickhouse.url: {:?} is not an http(s) URL", self.clickhouse.url));
        }
        self.alerts.validate(&mut problems);
        self.slo.validate(&mut problems);
        self.api.validate(&mut problems);
        self.retention.validate(&mut problems);
        self.identity.validate(&mut problems);
        self.assets.validate(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "))
        }
    }
}
