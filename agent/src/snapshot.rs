//! Building snapshots: asset identity, per-asset sequence numbers that
//! survive restarts, and full vs. delta snapshots from two fact sets.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use chrono::Utc;
use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, SnapshotKind};
use serde::Deserialize;

use crate::facts::{self, Facts};
use crate::root::HostRoot;

pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Works out the asset's identity from the config and the host.
pub fn asset(cfg: &AssetConfig, root: &HostRoot) -> Asset {
    let read = |p: &str| root.read_to_string(p).ok().flatten().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let hostname = cfg
        .hostname
        .clone()
        .or_else(|| read("/etc/hostname"))
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let id = cfg.id.clone().or_else(|| read("/etc/machine-id")).unwrap_or_else(|| hostname.clone());
    // Identity reads are not facts: don't watch them.
    let _ = root.take_reads();
    Asset { id, kind: cfg.kind, hostname, labels: cfg.labels.clone() }
}

/// Produces the snapshots of one asset.
pub struct Snapshotter {
    asset: Asset,
    agent_id: String,
    sequence: i64,
    state_file: Option<PathBuf>,
    last: Option<Facts>,
}

impl Snapshotter {
    /// `state_dir` keeps the sequence number; `None` (one-off snapshots)
    /// starts at 1 and keeps nothing.
    pub fn new(asset: Asset, agent_id: String, state_dir: Option<&Path>) -> Self {
        let state_file = state_dir.map(|d| d.join("sequence"));
        let sequence = state_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        Snapshotter { asset, agent_id, sequence, state_file, last: None }
    }

    /// The facts of the last snapshot.
    pub fn last(&self) -> Option<&Facts> {
        self.last.as_ref()
    }

    pub fn asset(&self) -> &Asset {
        &self.asset
    }

    fn next_sequence(&mut self) -> i64 {
        self.sequence += 1;
        if let Some(f) = &self.state_file {
            if let Err(e) = std::fs::write(f, self.sequence.to_string()) {
                tracing::warn!(file = %f.display(), error = %e, "cannot persist the snapshot sequence");
            }
        }
        self.sequence
    }

    fn build(&mut self, kind: SnapshotKind, facts: Vec<driftwatch_schemas::Fact>, removed: Vec<String>) -> ConfigSnapshot {
        ConfigSnapshot {
            asset: self.asset.clone(),
            agent_id: self.agent_id.clone(),
            agent_version: AGENT_VERSION.into(),
            snapshot_id: uuid::Uuid::now_v7().to_string(),
            sequence: self.next_sequence(),
            collected_at: Utc::now(),
            kind,
            facts,
            removed_paths: removed,
        }
    }

    /// A full snapshot of `facts`.
    pub fn full(&mut self, facts: Facts) -> ConfigSnapshot {
        let snap = self.build(SnapshotKind::Full, facts.to_wire(), Vec::new());
        self.last = Some(facts);
        snap
    }

    /// A delta against the last snapshot, or `None` if nothing changed.
    /// Without a previous snapshot, a full one.
    pub fn delta(&mut self, facts: Facts) -> Option<ConfigSnapshot> {
        let Some(last) = &self.last else { return Some(self.full(facts)) };
        let (changed, removed) = facts.diff(last);
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        let snap = self.build(SnapshotKind::Delta, changed, removed);
        self.last = Some(facts);
        Some(snap)
    }
}

/// Collects all facts of the host; with `previous`, the expensive file
/// scan is carried over instead of repeated (delta collections).
pub fn collect(root: &HostRoot, cfg: &facts::FactsConfig, previous: Option<&Facts>) -> Facts {
    facts::collect(root, cfg, previous)
}

/// The agent's own id, created once and kept in the state directory.
pub fn agent_id(state_dir: &Path) -> String {
    let f = state_dir.join("agent-id");
    if let Some(id) = std::fs::read_to_string(&f).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
        return id;
    }
    let id = uuid::Uuid::new_v4().to_string();
    if let Err(e) = std::fs::write(&f, &id) {
        tracing::warn!(file = %f.display(), error = %e, "cannot persist the agent id");
    }
    id
}

/// Identity of the asset this agent reports on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetConfig {
    /// Asset id; default: the host's `/etc/machine-id`, else its hostname.
    pub id: Option<String>,
    /// Hostname; default: the host's `/etc/hostname`, else the agent's.
    pub hostname: Option<String>,
    pub kind: AssetKind,
    pub labels: BTreeMap<String, String>,
}

impl Default for AssetConfig {
    fn default() -> Self {
        AssetConfig { id: None, hostname: None, kind: AssetKind::Host, labels: BTreeMap::new() }
    }
}

/// When to snapshot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Seconds between full snapshots.
    pub full_interval_secs: u64,
    /// Watch the files facts were read from and send deltas on change.
    pub watch: bool,
    /// Quiet time after a change before the delta is collected.
    pub debounce_ms: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { full_interval_secs: 3600, watch: true, debounce_ms: 500 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{AssetKind, FactValue};

    fn facts(pairs: &[(&str, &str)]) -> Facts {
        Facts(pairs.iter().map(|(k, v)| (k.to_string(), FactValue::from(*v))).collect())
    }

    #[test]
    fn deltas_carry_changes_and_removals_and_sequences_persist() {
        let d = tempfile::tempdir().unwrap();
        let asset = Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() };
        let mut s = Snapshotter::new(asset.clone(), "ag".into(), Some(d.path()));
        let full = s.full(facts(&[("x.a", "1"), ("x.b", "2")]));
        assert_eq!((full.sequence, full.kind), (1, SnapshotKind::Full));
        assert!(s.delta(facts(&[("x.a", "1"), ("x.b", "2")])).is_none());
        let delta = s.delta(facts(&[("x.a", "9"), ("x.c", "3")])).unwrap();
        assert_eq!(delta.sequence, 2);
        assert_eq!(delta.facts.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["x.a", "x.c"]);
        assert_eq!(delta.removed_paths, vec!["x.b"]);
        let mut again = Snapshotter::new(asset, "ag".into(), Some(d.path()));
        assert_eq!(again.full(Facts::default()).sequence, 3);
    }
}
