//! The cluster agent (`mode: cluster`, one per cluster): follows the API
//! objects compliance checks read, through the API server with list +
//! watch, and ships them as the snapshots of one `k8s-cluster` asset.
//!
//! One task per resource ([`follow`]) lists (paginated), then watches from
//! the list's resource version, and lists again when the watch expires
//! (410) or fails. Each object is reduced to its findings on arrival
//! ([`checks::summarize`]). The main loop applies the changes and, after a
//! quiet moment, sends a delta of the `k8s.*` facts ([`checks::facts`]): a
//! change in the cluster reaches the collector within seconds. A full
//! snapshot goes out once every resource was listed (or failed to be) and
//! then every `snapshots.full_interval_secs`.

pub mod api;
pub mod checks;
pub mod config;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_schemas::{Asset, AssetKind, Message};
use tokio::sync::{mpsc, watch};

use self::api::{Api, WatchEvent};
use self::checks::{Kind, Store, Summary};
use crate::snapshot::AssetConfig;
use crate::snapshot::Snapshotter;
pub use config::ClusterConfig;

/// A change to the store, from a resource's task.
enum Update {
    /// A complete list: replaces everything known of the resource.
    Listed(Kind, Vec<(String, Summary)>),
    Upsert(Kind, String, Summary),
    Deleted(Kind, String),
    /// The resource cannot be listed (forbidden, not served, unreachable).
    Failed(Kind, String),
}

/// The cluster's asset: its name is the id and the `cluster` label.
pub fn asset(asset: &AssetConfig, cluster: &ClusterConfig) -> Asset {
    let mut labels = asset.labels.clone();
    labels.entry("cluster".into()).or_insert_with(|| cluster.name.clone());
    let hostname = cluster.server().ok().and_then(|u| reqwest::Url::parse(&u).ok()?.host_str().map(String::from)).unwrap_or_default();
    Asset { id: asset.id.clone().unwrap_or_else(|| cluster.name.clone()), kind: AssetKind::K8sCluster, hostname, labels }
}

/// Runs until `shutdown` turns true.
pub async fn run(
    c: &ClusterConfig,
    full_interval: Duration,
    mut snapshotter: Snapshotter,
    out: mpsc::Sender<Message>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let server = c.server()?;
    let api = Arc::new(Api::new(&server, c.ca_file().as_deref(), c.token_file())?);
    tracing::info!(%server, cluster = %c.name, "following the cluster's objects");
    let (tx, mut rx) = mpsc::channel::<Update>(1024);
    let mut tasks = Vec::new();
    let kinds = Kind::followed(c.secrets_metadata);
    let objects = c.object_kinds().map_err(anyhow::Error::msg)?;
    for &kind in &kinds {
        let keep = objects.contains(&kind);
        tasks.push(tokio::spawn(follow(api.clone(), kind, keep, c.page_size, c.watch_timeout_secs, tx.clone())));
    }
    let reporting = checks::Reporting { exclude: &c.exclude_namespaces, objects: &objects, objects_max_bytes: c.objects_max_bytes };
    drop(tx);

    let mut store = Store::default();
    let mut settled: BTreeSet<Kind> = BTreeSet::new();
    let debounce = Duration::from_millis(c.debounce_ms);
    let mut due: Option<tokio::time::Instant> = None;
    let mut sent_full = false;
    let mut full_tick = tokio::time::interval(full_interval);
    full_tick.tick().await;
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let full = tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { break };
                apply(&mut store, &mut settled, u);
                // At most `debounce` after the first change: a cluster that
                // never stops changing still gets its deltas.
                due.get_or_insert_with(|| tokio::time::Instant::now() + debounce);
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => !sent_full,
            _ = full_tick.tick() => true,
            _ = shutdown.changed() => break,
        };
        due = None;
        if settled.len() < kinds.len() {
            continue; // the first snapshot waits for every resource
        }
        let facts = checks::facts(&store, &reporting);
        let snap = if full { Some(snapshotter.full(facts)) } else { snapshotter.delta(facts) };
        if let Some(s) = snap {
            sent_full = true;
            tracing::info!(kind = ?s.kind, sequence = s.sequence, facts = s.facts.len(), removed = s.removed_paths.len(), "cluster snapshot");
            if out.send(Message::Snapshot(s)).await.is_err() {
                break;
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

fn apply(store: &mut Store, settled: &mut BTreeSet<Kind>, u: Update) {
    match u {
        Update::Listed(kind, items) => {
            store.errors.remove(&kind);
            store.objects.insert(kind, items.into_iter().collect());
            settled.insert(kind);
        }
        Update::Upsert(kind, key, s) => {
            store.objects.entry(kind).or_default().insert(key, s);
        }
        Update::Deleted(kind, key) => {
            if let Some(m) = store.objects.get_mut(&kind) {
                m.remove(&key);
            }
        }
        Update::Failed(kind, e) => {
            store.errors.insert(kind, e);
            settled.insert(kind);
        }
    }
}

/// Lists and watches one resource forever (keeping its objects whole when
/// `keep`).
async fn follow(api: Arc<Api>, kind: Kind, keep: bool, page: u32, watch_secs: u64, out: mpsc::Sender<Update>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let listed = match api.list(kind.path(), kind.accept(true), page).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(resource = kind.path(), error = %e, retry_in_s = backoff.as_secs(), "cannot list");
                if out.send(Update::Failed(kind, e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        let items = listed.items.iter().map(|o| (checks::key(o), checks::summarize(kind, o, keep))).collect();
        if out.send(Update::Listed(kind, items)).await.is_err() {
            return;
        }
        let mut rv = listed.resource_version;
        loop {
            let started = tokio::time::Instant::now();
            let result = follow_watch(&api, kind, keep, &rv, watch_secs, &out).await;
            if out.is_closed() {
                return;
            }
            match result {
                Ok(last) => rv = last,
                Err(api::ApiError::Gone { .. }) => break,
                Err(e) => {
                    tracing::warn!(resource = kind.path(), error = %e, "watch failed; listing again");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
            // A server that ends watches at once is not hammered.
            tokio::time::sleep_until(started + Duration::from_secs(1)).await;
        }
    }
}

/// Where a pod finds its service account's token and the cluster's CA.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Passes one watch's changes on; returns the version to watch on from.
async fn follow_watch(
    api: &Api,
    kind: Kind,
    keep: bool,
    rv: &str,
    watch_secs: u64,
    out: &mpsc::Sender<Update>,
) -> Result<String, api::ApiError> {
    let mut watch = api.watch(kind.path(), kind.accept(false), rv, watch_secs).await?;
    while let Some(event) = watch.next().await? {
        let update = match event {
            WatchEvent::Upsert(o) => Update::Upsert(kind, checks::key(&o), checks::summarize(kind, &o, keep)),
            WatchEvent::Deleted(o) => Update::Deleted(kind, checks::key(&o)),
        };
        if out.send(update).await.is_err() {
            break;
        }
    }
    Ok(watch.last)
}

impl ClusterConfig {
    /// `ca_file`, else the service account's CA when in a pod.
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.ca_file.clone().or_else(|| Some(std::path::Path::new(SERVICE_ACCOUNT).join("ca.crt")).filter(|p| p.exists()))
    }

    /// `token_file`, else the service account's token when in a pod.
    pub fn token_file(&self) -> Option<std::path::PathBuf> {
        self.token_file.clone().or_else(|| Some(std::path::Path::new(SERVICE_ACCOUNT).join("token")).filter(|p| p.exists()))
    }

    /// The API server: `api_server`, else the in-cluster service address.
    pub fn server(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.api_server {
            return Ok(s.clone());
        }
        match (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT")) {
            (Ok(host), Ok(port)) if host.contains(':') => Ok(format!("https://[{host}]:{port}")),
            (Ok(host), Ok(port)) => Ok(format!("https://{host}:{port}")),
            _ => anyhow::bail!("cluster.api_server: not set, and not running in a pod (no KUBERNETES_SERVICE_HOST)"),
        }
    }
}
