//! `driftwatch-agent run`: wires the sources to the shipper and runs until
//! SIGINT/SIGTERM.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use driftwatch_schemas::Message;
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::config::{AgentConfig, Mode};
use crate::root::HostRoot;
use crate::snapshot::{self, Snapshotter};
use crate::{audit, probes, ship, watch};

/// Messages waiting for the shipper. Sources wait when it is full.
const QUEUE: usize = 10_000;

/// Runs the agent: its sources fill the spool, which is sent to Kafka.
pub async fn run(cfg: AgentConfig, shutdown: tokio_watch::Receiver<bool>) -> anyhow::Result<()> {
    let shared = open_spool(&cfg)?;
    tracing::info!(brokers = %cfg.kafka.brokers, "shipping to Kafka");
    let (stop_sending, sending_stopped) = tokio_watch::channel(false);
    let signer = Arc::new(ship::identity::load_or_create(&cfg.state_dir)?);
    tracing::info!(fingerprint = %signer.public().fingerprint(), "signing records with the agent's key");
    let producer = ship::producer::producer(&cfg.kafka)?;
    let (framing, ids) = ship::registry::channel(&cfg.kafka);
    tokio::spawn(ship::registry::register(cfg.kafka.clone(), framing, shutdown.clone()));
    let sender = tokio::spawn(ship::producer::send(cfg.kafka.clone(), producer, signer, shared.clone(), sending_stopped));
    sources(cfg, shared, ids, shutdown).await?;
    tracing::info!("sending what is spooled for up to 10 s");
    let _ = stop_sending.send(true);
    sender.await??;
    Ok(())
}

/// Opens the agent's spool (in its state directory).
pub fn open_spool(cfg: &AgentConfig) -> anyhow::Result<ship::producer::Shared> {
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating state directory {}", cfg.state_dir.display()))?;
    let spool_dir = cfg.state_dir.join("spool");
    let spool = ship::spool::Spool::open(&spool_dir, cfg.spool.max_bytes(), cfg.spool.segment_bytes())?;
    let pending = spool.stats().depth.load(std::sync::atomic::Ordering::Relaxed);
    if pending > 0 {
        tracing::info!(messages = pending, spool = %spool_dir.display(), "sending what an earlier run left in the spool");
    }
    Ok(ship::producer::Shared::new(spool))
}

/// Runs the sources (snapshots, audit logs, probes, heartbeat) into the
/// spool until `shutdown`, then spools what is queued, framed as `ids`
/// says ([`ship::registry`]). Whoever holds `shared` delivers it: the
/// Kafka sender of [`run`], or the single-node collector through
/// [`ship::local`].
pub async fn sources(
    cfg: AgentConfig,
    shared: ship::producer::Shared,
    ids: ship::registry::SchemaIds,
    shutdown: tokio_watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let root = Arc::new(HostRoot::new(&cfg.root));
    let asset = match cfg.mode {
        Mode::Host => snapshot::asset(&cfg.asset, &root),
        Mode::Cluster => crate::cluster::asset(&cfg.asset, &cfg.cluster),
    };
    let agent_id = snapshot::agent_id(&cfg.state_dir);
    tracing::info!(asset = %asset.id, hostname = %asset.hostname, root = %cfg.root.display(), "agent starting");

    let (tx, rx) = mpsc::channel::<Message>(QUEUE);
    let stats = shared.stats();
    let redactor = crate::redact::Redactor::new(&cfg.redact.patterns).map_err(anyhow::Error::msg)?;
    let spooler = tokio::spawn(ship::producer::spool_messages(shared, redactor, ids, rx));

    let mut tasks = Vec::new();
    if cfg.mode == Mode::Host {
        let (root, state, asset, tx, audit_cfg) = (root.clone(), cfg.state_dir.clone(), asset.clone(), tx.clone(), cfg.audit.clone());
        tasks.push(tokio::spawn(async move { audit::run(&root, &state, &audit_cfg, asset, tx).await }));
    }
    for p in cfg.probes.clone() {
        tasks.push(tokio::spawn(probes::run(asset.id.clone(), p, tx.clone())));
    }
    if cfg.heartbeat_secs > 0 {
        tasks.push(tokio::spawn(probes::heartbeat::run(asset.id.clone(), Duration::from_secs(cfg.heartbeat_secs), stats, tx.clone())));
    }

    let snapshotter = Snapshotter::new(asset, agent_id, Some(&cfg.state_dir));
    match cfg.mode {
        Mode::Host => host_snapshots(&cfg, &root, snapshotter, &tx, shutdown).await?,
        Mode::Cluster => {
            let full = std::time::Duration::from_secs(cfg.snapshots.full_interval_secs);
            crate::cluster::run(&cfg.cluster, full, snapshotter, tx.clone(), shutdown).await?
        }
    }

    tracing::info!("shutting down: spooling what is queued");
    for t in tasks {
        t.abort();
    }
    drop(tx);
    spooler.await??;
    Ok(())
}

/// Full snapshots of the host every `full_interval_secs`, and deltas when
/// a file facts were read from changes; until `shutdown`.
async fn host_snapshots(
    cfg: &AgentConfig,
    root: &Arc<HostRoot>,
    mut snapshotter: Snapshotter,
    tx: &mpsc::Sender<Message>,
    mut shutdown: tokio_watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (changed_tx, mut changed_rx) = mpsc::channel::<()>(1);
    let mut watcher =
        if cfg.snapshots.watch { Some(watch::FileWatcher::new(changed_tx).context("starting the file watcher")?) } else { None };
    let mut full_tick = tokio::time::interval(Duration::from_secs(cfg.snapshots.full_interval_secs));
    let debounce = Duration::from_millis(cfg.snapshots.debounce_ms);
    loop {
        let full = tokio::select! {
            _ = full_tick.tick() => true,
            Some(()) = changed_rx.recv() => {
                // Debounce: wait for a quiet moment, absorbing further events.
                loop {
                    tokio::select! {
                        Some(()) = changed_rx.recv() => continue,
                        _ = tokio::time::sleep(debounce) => break,
                    }
                }
                false
            }
            _ = shutdown.changed() => break,
        };
        let previous = if full { None } else { snapshotter.last().cloned() };
        let (facts, reads) = collect(root, cfg, previous).await?;
        let snap = if full { Some(snapshotter.full(facts)) } else { snapshotter.delta(facts) };
        if let Some(w) = watcher.as_mut() {
            w.set_paths(&reads);
        }
        if let Some(s) = snap {
            tracing::info!(kind = ?s.kind, sequence = s.sequence, facts = s.facts.len(), removed = s.removed_paths.len(), "snapshot");
            if tx.send(Message::Snapshot(s)).await.is_err() {
                break;
            }
        }
    }

    Ok(())
}

/// Collects facts off the async threads; returns them with the real paths
/// that were read (what the watcher watches).
async fn collect(
    root: &Arc<HostRoot>,
    cfg: &AgentConfig,
    previous: Option<crate::facts::Facts>,
) -> anyhow::Result<(crate::facts::Facts, BTreeSet<PathBuf>)> {
    let (root, cfg) = (root.clone(), cfg.clone());
    tokio::task::spawn_blocking(move || {
        let facts = snapshot::collect(&root, &cfg.facts, previous.as_ref());
        let reads = root.take_reads().iter().map(|p| root.path(p)).collect();
        // Reading a host allocates and frees megabytes (package databases):
        // give the freed memory back rather than keep it until the next run.
        crate::memory::release_free();
        (facts, reads)
    })
    .await
    .context("fact collection panicked")
}
