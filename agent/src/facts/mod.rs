//! Configuration facts: one module per fact family. Each family reads the
//! host through [`HostRoot`] and adds facts under its own root path
//! (`sshd.…`, `files[…]…`, `os.…`). A family that cannot read something
//! records an error fact (`<family>.errors`) instead of failing the snapshot.

pub mod accounts;
pub mod apt;
pub mod config;
pub mod content;
pub mod files;
pub mod host;
pub mod kernel;
pub mod kubelet;
pub mod logging;
pub mod mounts;
pub mod network;
pub mod os;
pub mod packages;
pub mod rpm;
pub mod scan;
pub mod services;
pub mod sshd;
pub mod sudo;
pub mod time;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};

use driftwatch_schemas::{Fact, FactPath, FactValue};

use crate::root::HostRoot;
pub use config::FactsConfig;

/// The facts of one collection, keyed by textual path.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts(pub BTreeMap<String, FactValue>);

impl Facts {
    pub fn set(&mut self, path: &FactPath, value: impl Into<FactValue>) {
        self.0.insert(path.to_string(), value.into());
    }

    /// Records that `family` could not read something; controls that need
    /// the missing facts become not applicable, and the error is visible.
    pub fn error(&mut self, family: &str, message: String) {
        let key = FactPath::new([family, "errors"]).to_string();
        match self.0.entry(key).or_insert_with(|| FactValue::List(Vec::new())) {
            FactValue::List(l) => l.push(message),
            other => *other = FactValue::List(vec![message]),
        }
    }

    pub fn to_wire(&self) -> Vec<Fact> {
        self.0.iter().map(|(p, v)| Fact { path: p.clone(), value: v.clone() }).collect()
    }

    /// What changed from `old` to `self`: changed or added facts, and
    /// removed paths.
    pub fn diff(&self, old: &Facts) -> (Vec<Fact>, Vec<String>) {
        let changed =
            self.0.iter().filter(|(p, v)| old.0.get(*p) != Some(*v)).map(|(p, v)| Fact { path: p.clone(), value: v.clone() }).collect();
        let removed = old.0.keys().filter(|p| !self.0.contains_key(*p)).cloned().collect();
        (changed, removed)
    }
}

/// What other families found: installed packages and enabled units.
pub struct Installed<'a> {
    pub packages: &'a BTreeSet<String>,
    pub enabled: &'a BTreeSet<String>,
}

impl Installed<'_> {
    /// A package is installed, or one of its binaries exists.
    pub fn has(&self, root: &HostRoot, package: &str, binaries: &[&str]) -> bool {
        self.packages.contains(package) || binaries.iter().any(|b| matches!(root.metadata(b), Ok(Some(_))))
    }

    pub fn enabled(&self, units: &[&str]) -> bool {
        units.iter().any(|u| self.enabled.contains(*u))
    }
}

/// Collects every fact family. With `previous` (a delta collection), the
/// file scan is not run again: its facts are carried over from `previous`.
pub fn collect(root: &HostRoot, cfg: &FactsConfig, previous: Option<&Facts>) -> Facts {
    let mut facts = Facts::default();
    os::collect(root, &mut facts);
    accounts::collect(root, &mut facts);
    sudo::collect(root, &mut facts);
    files::collect(root, &cfg.files, &mut facts);
    kubelet::collect(root, &mut facts);
    kernel::collect(root, &mut facts);
    mounts::collect(root, &mut facts);
    let packages = packages::collect(root, &mut facts);
    sshd::collect(root, &packages, &mut facts);
    let enabled = services::collect(root, &mut facts);
    let installed = Installed { packages: &packages, enabled: &enabled };
    logging::collect(root, &installed, &mut facts);
    time::collect(root, &installed, &mut facts);
    apt::collect(root, &mut facts);
    network::collect(root, &mut facts);
    tls::collect(root, &cfg.tls, &mut facts);
    content::collect(root, &cfg.content, &mut facts);
    match previous {
        None => scan::collect(root, &cfg.scan, &mut facts),
        Some(prev) => {
            for (k, v) in prev.0.range("files_scan.".to_string()..).take_while(|(k, _)| k.starts_with("files_scan.")) {
                facts.0.insert(k.clone(), v.clone());
            }
        }
    }
    if cfg.live_host.unwrap_or(root.root() == std::path::Path::new("/")) {
        host::collect(&mut facts);
    }
    facts
}

/// Test support: temporary host trees.
#[cfg(test)]
pub(crate) mod testing {
    use super::Facts;
    use crate::root::HostRoot;

    /// A temporary host tree holding `files` (host path, contents).
    pub fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, HostRoot) {
        let d = tempfile::tempdir().expect("temp dir");
        for (p, text) in files {
            let real = d.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(real.parent().expect("a parent")).expect("mkdir");
            std::fs::write(real, text).expect("write");
        }
        let root = HostRoot::new(d.path());
        (d, root)
    }

    /// Runs one family's `collect` on such a tree.
    pub fn collect_with(files: &[(&str, &str)], collect: impl Fn(&HostRoot, &mut Facts)) -> Facts {
        let (_d, root) = tree(files);
        let mut f = Facts::default();
        collect(&root, &mut f);
        f
    }
}
