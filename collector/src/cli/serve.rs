//! `run` and `standalone`: the collector's services, wired once, fed by
//! one of two transports (the Kafka consumer group, or the local agent's
//! spool in the same process). The store is whichever the configuration
//! names; evaluation, state, alerting and the API are the same code.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::{ingest, tasks, waiver};

/// Where records come from.
pub enum Transport {
    /// The consumer group on `kafka.brokers` (the distributed mode).
    Kafka,
    /// A local agent in this process, read through its spool.
    Local(Box<driftwatch_agent::config::AgentConfig>),
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(cfg: CollectorConfig, transport: Transport) -> anyhow::Result<()> {
    let policies = Arc::new(super::load_policies(&cfg.policies)?);
    tracing::info!(controls = policies.controls.len(), dir = %cfg.policies_source(), "policies loaded");
    let store = super::connect(&cfg).await?;
    tracing::info!(store = %store.location(), "store open");
    // Waivers are in force before the first record is evaluated.
    let waivers = Arc::new(super::load_waivers(&cfg.policies, &store).await?);
    for f in waiver::flags(&waivers.list, &policies) {
        tracing::warn!("{f}");
    }
    let (policies_tx, policies_rx) = tokio::sync::watch::channel(policies.clone());
    let (waivers_tx, waivers_rx) = tokio::sync::watch::channel(waivers.clone());
    let restore = match transport {
        Transport::Kafka => tasks::alerting::Restore::AtAssignment,
        Transport::Local(_) => tasks::alerting::Restore::AtStart,
    };
    let alerting =
        tasks::alerting::Alerting::start(&cfg.alerts, store.clone(), policies_rx.clone(), restore).await.context("starting alerting")?;
    // Fleet-wide work (SLOs, scores, retention…) runs on one collector: the
    // owner of the SLA topic's partition 0, or the only one.
    let leader = Arc::new(AtomicBool::new(matches!(transport, Transport::Local(_))));
    driftwatch_collector::metrics::leadership(leader.load(std::sync::atomic::Ordering::SeqCst));
    tokio::spawn(tasks::slo::run(cfg.slo.clone(), store.clone(), alerting.clone(), leader.clone()));
    let waivers_tx = Arc::new(waivers_tx);
    let shared = driftwatch_collector::api::Shared {
        store: store.clone(),
        policies: policies_rx.clone(),
        waivers: waivers_rx.clone(),
        publish_waivers: Some(waivers_tx.clone()),
        hub: driftwatch_collector::live::Hub::default(),
        slo: cfg.slo.clone(),
        unknown_after_secs: cfg.evaluation.unknown_after_secs,
        attestations: cfg.attestations,
    };
    let hub = shared.hub.clone();
    driftwatch_collector::api::start(&cfg.api, shared).await?;
    tokio::spawn(tasks::scores::run(
        tasks::scores::Inputs {
            policies: policies_rx.clone(),
            waivers: waivers_rx.clone(),
            store: store.clone(),
            posture: cfg.alerts.posture.clone().map(|p| (p, alerting.clone())),
            gaps: cfg.alerts.gaps.clone().map(|g| (g, alerting.clone())),
        },
        Duration::from_secs(cfg.evaluation.score_interval_secs),
        leader.clone(),
    ));
    if !cfg.reports.schedules.is_empty() {
        let named: std::collections::BTreeSet<&String> = cfg.reports.schedules.iter().flat_map(|s| &s.receivers).collect();
        let mut receivers = std::collections::BTreeMap::new();
        for r in cfg.alerts.receivers.iter().filter(|r| named.contains(&r.name)) {
            receivers.insert(r.name.clone(), driftwatch_collector::receivers::Receiver::new(r)?);
        }
        let inputs = tasks::reports::Inputs { policies: policies_rx.clone(), waivers: waivers_rx.clone(), store: store.clone(), receivers };
        tokio::spawn(tasks::reports::run(cfg.reports.clone(), inputs, leader.clone()));
    }
    tokio::spawn(tasks::attestations::run(
        policies_rx.clone(),
        store.clone(),
        alerting.clone(),
        Duration::from_secs(cfg.attestations.check_secs),
        leader.clone(),
    ));
    if let Some(after) = cfg.evaluation.unknown_after() {
        let every = Duration::from_secs(cfg.evaluation.evidence_check_secs);
        tokio::spawn(tasks::silence::run(policies_rx.clone(), store.clone(), after, every, leader.clone()));
    }
    tokio::spawn(
        tasks::waivers::Runner {
            dir: cfg.policies.clone(),
            store: store.clone(),
            policies: policies_rx.clone(),
            publish: waivers_tx,
            settings: cfg.waivers.clone(),
            alerting: alerting.clone(),
            leader: leader.clone(),
        }
        .run(),
    );
    tokio::spawn(driftwatch_collector::tasks::roots::run(store.clone(), leader.clone()));
    if cfg.retention.enforce {
        tokio::spawn(tasks::retention::run(store.clone(), cfg.retention.clone(), leader.clone()));
    }
    // Records on the broker are taken as their asset's word only when
    // signed by its pinned key (the single-node mode reads its own agent).
    let identity = match transport {
        Transport::Kafka => Some(
            ingest::identity::IdentityGate::start(cfg.identity.clone(), store.clone(), alerting.clone())
                .await
                .context("reading agents' keys")?,
        ),
        Transport::Local(_) => None,
    };
    let mut pipeline =
        ingest::Pipeline::start(policies, store, alerting, &cfg.evaluation, cfg.alerts.drift_min_severity, cfg.evidence.chain_id.clone())
            .await
            .context("starting the pipeline")?;
    pipeline.live = hub;
    pipeline.compact_snapshots(cfg.store.compact_snapshots);
    if matches!(transport, Transport::Kafka) {
        // Posture is read when the group assigns partitions (it then
        // includes what their previous owner stored), the waivers that
        // started or ended while the collector was down applied over it.
        pipeline.waivers_after_restore = true;
    } else {
        pipeline.restore_posture().await.context("restoring posture")?;
        // Waivers that started or ended while the collector was down.
        let mut pending = ingest::Pipeline::new_pending();
        pipeline.replace_waivers(waivers, &mut pending);
        pipeline.flush(pending).await;
    }
    // The watcher must live as long as the consumer.
    let _watcher = if cfg.evaluation.reload_policies {
        Some(
            ingest::reload::watch(&cfg.policies, policies_tx)
                .with_context(|| format!("watching {} for changes", cfg.policies.display()))?,
        )
    } else {
        None
    };

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the current batch");
        let _ = tx.send(true);
    });
    let opts = ingest::LoopOptions {
        max_messages: cfg.batch.max_messages,
        max_rows: cfg.batch.max_rows,
        max_wait: Duration::from_millis(cfg.batch.max_wait_ms),
        linger: Duration::from_millis(cfg.batch.linger_ms),
        tick: Duration::from_millis(cfg.evaluation.tick_ms),
        memory_limit: (cfg.evaluation.memory_limit_mb > 0).then(|| cfg.evaluation.memory_limit_mb.saturating_mul(1 << 20)),
        policies: policies_rx,
        waivers: waivers_rx,
    };
    let labels =
        driftwatch_collector::assets::AssetLabels::compile(&cfg.assets).map_err(|p| anyhow::anyhow!("assets.labels: {}", p.join("; ")))?;
    let stopping = pipeline.alerting.clone();
    let consumed = match transport {
        Transport::Kafka => {
            let identity = identity.context("the identity gate is started for Kafka")?;
            // The consumer group, until the signal, as the local transport
            // below: one loop (`ingest::run`) over either source.
            let source = ingest::kafka::KafkaSource::connect(&cfg.kafka, &cfg.limits, labels, identity, leader)?;
            ingest::run(source, opts, pipeline, rx).await
        }
        Transport::Local(agent) => {
            let spool = driftwatch_agent::run::open_spool(&agent)?;
            let reader = driftwatch_agent::ship::local::SpoolReader::new(spool.clone());
            let agent = tokio::spawn(driftwatch_agent::run::sources(*agent, spool, Default::default(), rx.clone()));
            let source = ingest::local::LocalSource::new(reader, &cfg.limits, labels)?;
            // The agent stops first (its queue spooled), then the loop
            // stores what it read.
            ingest::run(source, opts, pipeline, rx).await?;
            agent.await.context("the local agent panicked")??;
            Ok(())
        }
    };
    // The last batch is stored and every alert queued: deliver and log what
    // is due, so that the restart does not send it again.
    stopping.stop(STOP_DELIVERY).await;
    consumed
}

/// How long a graceful stop waits for notifications on their way.
const STOP_DELIVERY: Duration = Duration::from_secs(10);

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The arguments of `driftwatch-collector run`.
#[derive(Args)]
pub struct RunArgs {
    /// Configuration file (YAML); env DRIFTWATCH_COLLECTOR__SECTION__KEY overrides.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Directory of policy packs, over the configuration's `policies` (default: ./policies, else the packs installed beside the binary, else those embedded in it).
    #[arg(long)]
    pub policies: Option<PathBuf>,
}

/// `driftwatch-collector run`: the distributed mode, fed by the Kafka
/// consumer group.
pub async fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let cfg = CollectorConfig::load_with_policies(args.config.as_deref(), args.policies.as_deref())?;
    run(cfg, Transport::Kafka).await
}

/// The arguments of `driftwatch-collector standalone`.
#[derive(Args)]
pub struct StandaloneArgs {
    /// Collector configuration (YAML); its kafka and clickhouse sections are unused.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where the database and the agent's state go (unless the configurations set them).
    #[arg(long, default_value = "driftwatch-data", env = "DRIFTWATCH_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The local agent's configuration (as for driftwatch-agent); its kafka section is unused.
    #[arg(long)]
    pub agent_config: Option<PathBuf>,
    /// Directory of policy packs, over the configuration's `policies` (default: ./policies, else the packs installed beside the binary, else those embedded in it).
    #[arg(long)]
    pub policies: Option<PathBuf>,
}

/// `driftwatch-collector standalone`: the collector and a local agent in
/// one process, SQLite instead of ClickHouse, the spool instead of Kafka.
pub async fn standalone(s: StandaloneArgs) -> anyhow::Result<()> {
    let mut cfg = CollectorConfig::load_with_policies(s.config.as_deref(), s.policies.as_deref())?;
    cfg.store.kind = driftwatch_collector::config::StoreKind::Sqlite;
    if cfg.store.sqlite_path == driftwatch_collector::config::StoreConfig::default().sqlite_path {
        cfg.store.sqlite_path = s.data_dir.join("driftwatch.db");
    }
    let mut agent = driftwatch_agent::config::AgentConfig::load(s.agent_config.as_deref()).with_context(|| {
        format!("the local agent's configuration{}", s.agent_config.map(|p| format!(" {}", p.display())).unwrap_or_default())
    })?;
    if agent.state_dir == driftwatch_agent::config::AgentConfig::default().state_dir {
        agent.state_dir = s.data_dir.join("agent");
    }
    let api = cfg.api.listen.as_deref().map(|l| format!("http://{l}/")).unwrap_or_else(|| "off (api.listen is null)".into());
    // No keys configured: one admin key for this data directory, kept in
    // it (like a notebook server's token), so the page and curl just work.
    let mut key_note = String::from("the keys of api.keys");
    let mut live = format!("{api}ui");
    if cfg.api.keys.is_empty() {
        let (key, path) = local_key(&s.data_dir)?;
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        cfg.api.keys.push(driftwatch_collector::api::auth::KeyConfig {
            name: "standalone".into(),
            sha256,
            scope: driftwatch_collector::api::auth::Scope::Admin,
        });
        key_note = format!("in {} (curl -H \"Authorization: Bearer $(cat {})\" {api}api/v1/posture)", path.display(), path.display());
        live = format!("{live}#key={key}");
    }
    let guide = format!(
        "Driftwatch single-node mode\n\
         \x20 data:        {db} (SQLite)\n\
         \x20 agent state: {state} (spool, offsets)\n\
         \x20 this host:   {root} (asset {asset})\n\
         \x20 policies:    {policies}\n\
         \x20 live view:   {live}\n\
         \x20 API:         {api}api/v1/ (key {key_note})\n\
         \x20 query it:    DRIFTWATCH_COLLECTOR__STORE__KIND=sqlite DRIFTWATCH_COLLECTOR__STORE__SQLITE_PATH={db} driftwatch-collector posture\n\
         To grow to Kafka + ClickHouse: run `driftwatch-agent run` on each host and `driftwatch-collector run` with\n\
         kafka.brokers and clickhouse.url set (README, \"From one host to a fleet\"). The history in this file is not\n\
         copied; it stays readable with the command above.",
        db = cfg.store.sqlite_path.display(),
        state = agent.state_dir.display(),
        root = agent.root.display(),
        asset = agent.asset.id.as_deref().unwrap_or("its machine id or host name"),
        policies = cfg.policies_source(),
    );
    eprintln!("{guide}");
    run(cfg, Transport::Local(Box::new(agent))).await
}

/// The API key of a data directory: read from `<dir>/api-key`, or made
/// and written there (readable by its owner only).
fn local_key(data_dir: &std::path::Path) -> anyhow::Result<(String, PathBuf)> {
    let path = data_dir.join("api-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_string();
        anyhow::ensure!(k.len() >= 32, "{}: the API key is too short (delete the file to make a new one)", path.display());
        return Ok((k, path));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = hex::encode(rand::random::<[u8; 24]>());
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{key}").with_context(|| format!("writing {}", path.display()))?;
    Ok((key, path))
}
