//! Policy hot-reload: a change under the policy directory reloads every
//! pack. A set with any error is rejected whole — logged with each file:line
//! — and the running set stays; a valid set is published on a watch
//! channel: the consumer loop swaps it in between batches, and the tasks
//! that read policies (scores, silent assets, waivers, API) take the
//! latest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::policy::{self, PolicySet};

/// Quiet time after the last change before reloading (editors write in
/// several steps).
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Watches `dir`, publishing each valid reloaded set on `tx`. The watcher
/// lives as long as the returned guard.
pub fn watch(dir: &Path, tx: watch::Sender<Arc<PolicySet>>) -> notify::Result<notify::RecommendedWatcher> {
    let (raw_tx, raw_rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    let dir: PathBuf = dir.to_path_buf();
    std::thread::Builder::new()
        .name("policy-reload".into())
        .spawn(move || {
            while raw_rx.recv().is_ok() {
                // Drain the burst, then wait for quiet.
                while raw_rx.recv_timeout(DEBOUNCE).is_ok() {}
                match policy::load_dir(&dir) {
                    Ok(set) => {
                        tracing::info!(dir = %dir.display(), controls = set.controls.len(), "policy packs changed and are valid");
                        if tx.send(Arc::new(set)).is_err() {
                            return; // everything reading policies stopped
                        }
                    }
                    Err(errors) => {
                        tracing::error!(dir = %dir.display(), errors = errors.0.len(), "policy packs changed but are invalid; keeping the running set:\n{errors}");
                    }
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}
