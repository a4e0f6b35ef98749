//! Collector configuration: one YAML file, overridable by environment
//! variables `DRIFTWATCH_COLLECTOR__SECTION__KEY` (see
//! `driftwatch_schemas::settings`). Every field has a default that works
//! with `deploy/local/services`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::evidence::EvidenceConfig;
pub use crate::ingest::config::{BatchConfig, EvaluationConfig, KafkaConfig, TopicsConfig};
pub use crate::store::config::{ClickHouseConfig, StoreConfig, StoreKind};
pub use crate::tasks::alerting::AlertsConfig;

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
    pub slo: crate::slo::conditions::SloSettings,
    /// The HTTP API.
    pub api: crate::api::ApiConfig,
    /// Waivers: how often they are re-read, when expiry is reminded.
    pub waivers: crate::waiver::sync::WaiverSettings,
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
    /// Attested controls: how often their results are looked at, and the
    /// bounds on evidence files.
    pub attestations: crate::attest::Limits,
    /// Scheduled reports (a weekly scorecard per framework by email or
    /// webhook).
    pub reports: crate::report::schedule::ReportsConfig,
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
            attestations: Default::default(),
            reports: Default::default(),
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
        if self.kafka.schema_registry.is_set() {
            problems.extend(self.kafka.schema_registry.validate("kafka.schema_registry").err());
        }
        if self.batch.max_messages == 0 {
            problems.push("batch.max_messages: must be at least 1".to_string());
        }
        if self.batch.max_rows == 0 {
            problems.push("batch.max_rows: must be at least 1".to_string());
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
        use driftwatch_schemas::clickhouse::check_identifier;
        if let Err(e) = check_identifier("database", &self.clickhouse.database, "_") {
            problems.push(format!("clickhouse.database: {e}"));
        }
        if let Some(Err(e)) = self.clickhouse.cluster.as_ref().map(|c| check_identifier("cluster", c, "_-.")) {
            problems.push(format!("clickhouse.cluster: {e}"));
        }
        if self.store.kind == StoreKind::Clickhouse {
            if self.clickhouse.tls.is_set() && !self.clickhouse.url.starts_with("https://") {
                problems.push(format!("clickhouse.tls: set, but clickhouse.url {:?} is not https://", self.clickhouse.url));
            }
            if let Err(e) = crate::store::clickhouse::tls::client_config(&self.clickhouse.tls) {
                problems.push(e);
            }
        }
        self.alerts.validate(&mut problems);
        self.slo.validate(&mut problems);
        self.api.validate(&mut problems);
        self.retention.validate(&mut problems);
        self.attestations.validate(&mut problems);
        let receivers: Vec<(String, bool)> =
            self.alerts.receivers.iter().map(|r| (r.name.clone(), r.email.is_some() || r.webhook.is_some())).collect();
        self.reports.validate(&receivers, &mut problems);
        self.identity.validate(&mut problems);
        self.assets.validate(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "))
        }
    }
}
