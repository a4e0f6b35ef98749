//! Evaluation: applies snapshots to each asset's facts, runs the controls
//! that apply, and tracks posture per (asset, control). A change of posture
//! into or out of `fail` opens or resolves a violation.
//!
//! The engine is synchronous and owned by one task; it does no I/O. What
//! it returns is written to the store and sent to the alerter by the caller.

pub mod facts;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schemas::{Asset, ConfigSnapshot, FactPath, FactValue, SnapshotKind};
use serde::Serialize;

use crate::policy::{CompiledControl, PolicySet};
use facts::FactMap;

/// The result of one control on one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Error,
    NotApplicable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::NotApplicable => "not_applicable",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Pass, Status::Fail, Status::Error, Status::NotApplicable].into_iter().find(|x| x.as_str() == s)
    }
}

/// One control evaluated on one asset.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: crate::policy::Severity,
    pub status: Status,
    /// Framework → requirement ids.
    pub frameworks: BTreeMap<String, Vec<String>>,
    /// The facts the check read, with their values when evaluated.
    pub evidence: BTreeMap<String, FactValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub evaluated_at: DateTime<Utc>,
    pub snapshot_id: String,
    pub sequence: i64,
}

/// Evaluates every control that applies to `asset` against `facts`.
pub fn evaluate_all(
    policies: &PolicySet,
    asset: &Asset,
    facts: &FactMap,
    snapshot_id: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Vec<Evaluation> {
    evaluate(policies, None, asset, &facts::CelFacts::build(facts), facts, snapshot_id, sequence, at)
}

/// Evaluates the controls at `which` (indexes into `policies.controls`;
/// `None`: all) that apply to `asset`, with the facts already prepared as
/// CEL variables (`vars`) and as a map (`facts`, for evidence).
#[allow(clippy::too_many_arguments)]
fn evaluate(
    policies: &PolicySet,
    which: Option<&[usize]>,
    asset: &Asset,
    vars: &facts::CelFacts,
    facts: &FactMap,
    snapshot_id: &str,
    sequence: i64,
    at: DateTime<Utc>,
) -> Vec<Evaluation> {
    let controls: Box<dyn Iterator<Item = &CompiledControl>> = match which {
        Some([]) => return Vec::new(),
        Some(w) => Box::new(w.iter().filter_map(|i| policies.controls.get(*i))),
        None => Box::new(policies.controls.iter()),
    };
    let root = crate::policy::cel::root_context();
    let mut ctx = root.new_inner_scope();
    for (name, value) in vars.variables() {
        ctx.add_variable_from_value(name.clone(), value.clone());
    }
    controls
        .filter(|c| c.applies_to(asset.kind, &asset.labels))
        .map(|c| {
            let (status, message) = run_check(c, &ctx);
            let evidence = c.reads.iter().flat_map(|p| facts::facts_under(facts, p)).collect();
            Evaluation {
                asset_id: asset.id.clone(),
                control_id: c.control.id.clone(),
                title: c.control.title.clone(),
                severity: c.control.severity,
                status,
                frameworks: c.control.frameworks.clone(),
                evidence,
                message,
                evaluated_at: at,
                snapshot_id: snapshot_id.to_string(),
                sequence,
            }
        })
        .collect()
}

fn run_check(c: &CompiledControl, ctx: &cel::Context) -> (Status, Option<String>) {
    match c.program.execute(ctx) {
        Ok(cel::Value::Bool(true)) => (Status::Pass, None),
        Ok(cel::Value::Bool(false)) => (Status::Fail, None),
        Ok(other) => (Status::Error, Some(format!("check returned {other:?}, not a boolean"))),
        Err(e) if crate::policy::cel::is_missing_fact(&e) => (Status::NotApplicable, Some(format!("facts not collected: {e}"))),
        Err(e) => (Status::Error, Some(e.to_string())),
    }
}

/// A violation opened or resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub violation_id: String,
    pub kind: TransitionKind,
    pub previous: Option<Status>,
    pub evaluation: Evaluation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Opened,
    Resolved,
}

impl TransitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Opened => "opened",
            TransitionKind::Resolved => "resolved",
        }
    }
}

/// Posture of one control on one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct PostureEntry {
    pub status: Status,
    pub since: DateTime<Utc>,
    /// The open violation, while the control fails.
    pub violation_id: Option<String>,
}

struct AssetState {
    asset: Asset,
    facts: FactMap,
    /// `facts` as CEL variables, patched by deltas.
    cel: facts::CelFacts,
    sequence: i64,
    /// Set when a delta skipped sequence numbers (deltas were lost): the
    /// facts may be wrong until the next full snapshot.
    stale_since: Option<(i64, i64)>,
}

/// What applying one snapshot produced.
#[derive(Debug, Default)]
pub struct Applied {
    pub evaluations: Vec<Evaluation>,
    pub transitions: Vec<Transition>,
}

/// The continuous engine: current facts and posture of every asset.
pub struct Engine {
    policies: Arc<PolicySet>,
    assets: HashMap<String, AssetState>,
    posture: HashMap<(String, String), PostureEntry>,
}

impl Engine {
    pub fn new(policies: Arc<PolicySet>) -> Self {
        Engine { policies, assets: HashMap::new(), posture: HashMap::new() }
    }

    /// Seeds posture restored from the store, so that a restarted collector
    /// neither re-opens open violations nor misses resolving them.
    pub fn restore(&mut self, asset_id: &str, control_id: &str, entry: PostureEntry) {
        self.posture.insert((asset_id.to_string(), control_id.to_string()), entry);
    }

    /// Whether lost deltas make the asset's facts unreliable.
    pub fn is_stale(&self, asset_id: &str) -> bool {
        self.assets.get(asset_id).is_some_and(|a| a.stale_since.is_some())
    }

    pub fn posture(&self, asset_id: &str, control_id: &str) -> Option<&PostureEntry> {
        self.posture.get(&(asset_id.to_string(), control_id.to_string()))
    }

    /// Applies a snapshot and evaluates. A delta older than what was
    /// already applied (an at-least-once redelivery) changes nothing.
    pub fn apply(&mut self, snap: &ConfigSnapshot) -> Applied {
        let state = self.assets.entry(snap.asset.id.clone()).or_insert_with(|| AssetState {
            asset: snap.asset.clone(),
            facts: FactMap::new(),
            cel: facts::CelFacts::default(),
            sequence: 0,
            stale_since: None,
        });
        // A full snapshot re-evaluates everything; a delta only the controls
        // that read a changed or removed path.
        let mut which: Option<Vec<usize>> = None;
        match snap.kind {
            SnapshotKind::Full => {
                state.facts = snap.facts.iter().map(|f| (f.path.clone(), f.value.clone())).collect();
                state.cel = facts::CelFacts::build(&state.facts);
                if let Some((from, to)) = state.stale_since.take() {
                    tracing::info!(asset = %snap.asset.id, sequence = snap.sequence, "full snapshot received; asset no longer stale (gap was {from}→{to})");
                }
            }
            SnapshotKind::Delta => {
                if snap.sequence <= state.sequence {
                    return Applied::default();
                }
                if state.sequence > 0 && snap.sequence > state.sequence + 1 && state.stale_since.is_none() {
                    tracing::warn!(asset = %snap.asset.id, last = state.sequence, got = snap.sequence, "sequence gap: deltas lost; asset stale until the next full snapshot");
                    state.stale_since = Some((state.sequence, snap.sequence));
                }
                for f in &snap.facts {
                    state.facts.insert(f.path.clone(), f.value.clone());
                }
                for p in &snap.removed_paths {
                    state.facts.remove(p);
                }
                let changed: Vec<FactPath> = snap
                    .facts
                    .iter()
                    .map(|f| f.path.as_str())
                    .chain(snap.removed_paths.iter().map(String::as_str))
                    .filter_map(|p| FactPath::parse(p).ok())
                    .collect();
                state.cel.update(&state.facts, &changed, !snap.removed_paths.is_empty());
                which = Some(self.policies.affected(&changed));
            }
        }
        state.asset = snap.asset.clone();
        state.sequence = snap.sequence;
        let mut evaluations = evaluate(
            &self.policies,
            which.as_deref(),
            &state.asset,
            &state.cel,
            &state.facts,
            &snap.snapshot_id,
            snap.sequence,
            snap.collected_at,
        );
        if let Some((from, to)) = state.stale_since {
            let note = format!("asset stale: deltas {}..{} were lost; results may be wrong until the next full snapshot", from + 1, to - 1);
            for e in &mut evaluations {
                e.message = Some(match e.message.take() {
                    Some(m) => format!("{note}; {m}"),
                    None => note.clone(),
                });
            }
        }
        let mut transitions = Vec::new();
        for ev in &evaluations {
            if let Some(t) = self.track(ev) {
                transitions.push(t);
            }
        }
        Applied { evaluations, transitions }
    }

    /// Updates posture with one evaluation; returns a transition if a
    /// violation opens or resolves.
    fn track(&mut self, ev: &Evaluation) -> Option<Transition> {
        let key = (ev.asset_id.clone(), ev.control_id.clone());
        let prev = self.posture.get(&key).cloned();
        let open = prev.as_ref().and_then(|p| p.violation_id.clone());
        let since = match &prev {
            Some(p) if p.status == ev.status => p.since,
            _ => ev.evaluated_at,
        };
        let (violation_id, transition) = match (ev.status, open) {
            (Status::Fail, None) => {
                // Deterministic, so a redelivered snapshot yields the same id.
                let id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("{}\0{}\0{}", ev.asset_id, ev.control_id, ev.snapshot_id).as_bytes(),
                )
                .to_string();
                (Some(id.clone()), Some((id, TransitionKind::Opened)))
            }
            (Status::Pass, Some(id)) => (None, Some((id, TransitionKind::Resolved))),
            // Errors and missing facts neither open nor resolve: they are
            // not evidence of compliance.
            (_, open) => (open, None),
        };
        self.posture.insert(key, PostureEntry { status: ev.status, since, violation_id });
        transition.map(|(violation_id, kind)| Transition { violation_id, kind, previous: prev.map(|p| p.status), evaluation: ev.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{AssetKind, Fact};
    use std::path::Path;

    fn policies() -> Arc<PolicySet> {
        let text = r#"pack: t
controls:
  - id: root
    title: root login off
    severity: high
    check: sshd.config.permitrootlogin == "no"
    frameworks: {soc2: [CC6.1], pci-dss: ["2.2.6"]}
  - id: shadow
    title: shadow private
    severity: medium
    check: mode_within(files["/etc/shadow"].mode, "0640")
    frameworks: {soc2: [CC6.1], pci-dss: ["7.2.1"]}
  - id: broken
    title: broken
    severity: low
    check: sshd.config.permitrootlogin + 1 == 2
    frameworks: {soc2: [CC6.1], pci-dss: ["7.2.1"]}
"#;
        Arc::new(PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), text).unwrap()))
    }

    fn snap(seq: i64, kind: SnapshotKind, facts: &[(&str, FactValue)], removed: &[&str]) -> ConfigSnapshot {
        ConfigSnapshot {
            asset: Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() },
            agent_id: "ag".into(),
            agent_version: "0".into(),
            snapshot_id: format!("s{seq}"),
            sequence: seq,
            collected_at: Utc::now(),
            kind,
            facts: facts.iter().map(|(p, v)| Fact { path: p.to_string(), value: v.clone() }).collect(),
            removed_paths: removed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn status(a: &Applied, id: &str) -> Status {
        a.evaluations.iter().find(|e| e.control_id == id).unwrap().status
    }

    #[test]
    fn fail_opens_pass_resolves_and_missing_is_not_applicable() {
        let mut e = Engine::new(policies());
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert_eq!(status(&a, "root"), Status::Fail);
        assert_eq!(status(&a, "shadow"), Status::NotApplicable);
        assert_eq!(status(&a, "broken"), Status::Error);
        assert_eq!(a.transitions.len(), 1);
        assert_eq!(a.transitions[0].kind, TransitionKind::Opened);
        let ev = &a.transitions[0].evaluation;
        assert_eq!(ev.evidence.get("sshd.config.permitrootlogin"), Some(&FactValue::from("yes")));

        // Still failing: no new transition.
        let b = e.apply(&snap(2, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        assert!(b.transitions.is_empty());
        assert_eq!(status(&b, "shadow"), Status::Pass);

        let c = e.apply(&snap(3, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(c.transitions.len(), 1);
        assert_eq!(c.transitions[0].kind, TransitionKind::Resolved);
        assert_eq!(c.transitions[0].violation_id, a.transitions[0].violation_id);
        assert_eq!(c.transitions[0].previous, Some(Status::Fail));
    }

    #[test]
    fn a_delta_evaluates_only_the_controls_that_read_what_changed() {
        let mut e = Engine::new(policies());
        assert_eq!(e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[])).evaluations.len(), 3);
        let d = e.apply(&snap(2, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        assert_eq!(d.evaluations.iter().map(|x| x.control_id.as_str()).collect::<Vec<_>>(), vec!["shadow"]);
        let n = e.apply(&snap(3, SnapshotKind::Delta, &[("os.id", "debian".into())], &[]));
        assert!(n.evaluations.is_empty(), "nothing reads os.id");
        assert_eq!(e.posture("a", "root").unwrap().status, Status::Fail, "untouched posture stays");
    }

    #[test]
    fn stale_deltas_are_ignored_and_removed_paths_apply() {
        let mut e = Engine::new(policies());
        e.apply(&snap(5, SnapshotKind::Full, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        assert!(e.apply(&snap(4, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0777".into())], &[])).evaluations.is_empty());
        let a = e.apply(&snap(6, SnapshotKind::Delta, &[], &[r#"files["/etc/shadow"].mode"#]));
        assert_eq!(status(&a, "shadow"), Status::NotApplicable);
    }

    #[test]
    fn a_sequence_gap_marks_the_asset_stale_until_a_full_snapshot() {
        let mut e = Engine::new(policies());
        e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        e.apply(&snap(2, SnapshotKind::Delta, &[], &[]));
        assert!(!e.is_stale("a"));
        let a = e.apply(&snap(5, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert!(e.is_stale("a"));
        assert!(a.evaluations[0].message.as_deref().unwrap().starts_with("asset stale: deltas 3..4 were lost"));
        e.apply(&snap(6, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert!(!e.is_stale("a"));
    }

    #[test]
    fn restored_posture_prevents_a_second_open() {
        let mut e = Engine::new(policies());
        e.restore("a", "root", PostureEntry { status: Status::Fail, since: Utc::now(), violation_id: Some("v1".into()) });
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert!(a.transitions.is_empty());
        let b = e.apply(&snap(2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(b.transitions[0].violation_id, "v1");
    }
}
