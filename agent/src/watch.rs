//! Change detection: watch the directories of every file the last
//! snapshot read (editors replace files by rename; packages add files to
//! `.d` directories), and signal when one of those paths changed.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches a set of paths; a change to any of them sends `()` on the channel.
pub struct FileWatcher {
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    interesting: std::sync::Arc<std::sync::RwLock<HashSet<PathBuf>>>,
}

impl FileWatcher {
    pub fn new(changed: mpsc::Sender<()>) -> notify::Result<Self> {
        let interesting = std::sync::Arc::new(std::sync::RwLock::new(HashSet::<PathBuf>::new()));
        let seen = interesting.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if event.kind.is_access() {
                return;
            }
            let hit = seen
                .read()
                .map(|set| event.paths.iter().any(|p| set.contains(p) || p.parent().is_some_and(|d| set.contains(d))))
                .unwrap_or(true);
            if hit {
                let _ = changed.try_send(());
            }
        })?;
        Ok(FileWatcher { watcher, dirs: HashSet::new(), interesting })
    }

    /// Watches exactly `paths` (real paths) from now on: a path that is a
    /// directory is watched for any entry; a file through its directory.
    pub fn set_paths(&mut self, paths: &BTreeSet<PathBuf>) {
        let mut dirs = HashSet::new();
        for p in paths {
            if p.is_dir() {
                dirs.insert(p.clone());
            } else if let Some(parent) = existing_ancestor(p) {
                dirs.insert(parent);
            }
        }
        for d in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(d);
        }
        for d in dirs.difference(&self.dirs) {
            if let Err(e) = self.watcher.watch(d, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot watch");
            }
        }
        self.dirs = dirs;
        if let Ok(mut set) = self.interesting.write() {
            *set = paths.iter().cloned().collect();
        }
    }
}

/// The nearest existing directory above `p` (a missing file's directory may
/// itself be missing; watching the nearest ancestor notices its creation).
fn existing_ancestor(p: &Path) -> Option<PathBuf> {
    let mut cur = p.parent();
    while let Some(d) = cur {
        if d.is_dir() {
            return Some(d.to_path_buf());
        }
        cur = d.parent();
    }
    None
}
