//! Evaluation: applies snapshots to each asset's facts, runs the controls
//! that apply, and tracks posture per (asset, control). A change of posture
//! into or out of `fail` opens or resolves a violation; any change of a
//! fact check's status is a [`drift::DriftEvent`]. Detections ([`detect`])
//! count audit and probe records in sliding windows.
//!
//! A result is only as good as its evidence: when the facts a check needs
//! could not be read (the family's error fact), or deltas were lost (a
//! sequence gap) and no full snapshot has come since, the result is
//! `unknown`, with the reason first in its message (`fact_unreadable: …`,
//! `sequence_gap: …`; `asset_silent: …` is written by [`silence`]). A
//! failing control exempted by a waiver in force is `waived`.
//!
//! The engine is synchronous and owned by one task; it does no I/O. What
//! it returns is written to the store and sent to the alerter by the caller.
//! Only the checks of one evaluation may run on other threads (a pool the
//! caller gives it): they read the asset's facts, the engine's state is
//! touched by its owner alone.

pub mod detect;
pub mod drift;
mod evaluate;
pub mod facts;
mod intern;
mod posture;
pub mod rows;
pub mod silence;
pub mod testing;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use driftwatch_schemas::{Asset, ConfigSnapshot, FactPath, FactValue, Message, SnapshotKind};

use crate::policy::PolicySet;
pub use crate::store::values::Status;
use evaluate::{evaluate, Input};
pub use evaluate::{evaluate_all, Evaluation};
use facts::FactMap;
use posture::Posture;
pub use posture::{PostureEntry, Transition, TransitionKind};

/// How far ahead of the last applied delta a delta's sequence may jump:
/// a forged or corrupt `i64::MAX` would otherwise make every real delta
/// look old until the next full snapshot.
pub const MAX_SEQUENCE_JUMP: i64 = 1_000_000;

struct AssetState {
    asset: Asset,
    facts: FactMap,
    /// `facts` as CEL variables, patched by deltas.
    cel: facts::CelFacts,
    sequence: i64,
    /// Set when a delta skipped sequence numbers (deltas were lost): the
    /// facts may be wrong until the next full snapshot.
    stale_since: Option<(i64, i64)>,
    /// Whether a full snapshot was applied (else `facts` holds only what
    /// deltas since a restart or rebalance brought).
    complete: bool,
    /// The digest of `facts` (`None` once a delta changed them).
    digest: Option<String>,
    /// The last snapshot's collection time, or the last heartbeat.
    last_seen: DateTime<Utc>,
    /// When it was last seen as the silence task sees it: the collector's
    /// receipt of its last snapshot (the store's `received_at`) or its
    /// last heartbeat's time.
    last_received: DateTime<Utc>,
}

impl AssetState {
    fn input<'a>(&'a self, waivers: &'a crate::waiver::Waivers, waivers_at: DateTime<Utc>) -> Input<'a> {
        Input {
            asset: &self.asset,
            vars: &self.cel,
            facts: &self.facts,
            complete: self.complete,
            stale: self.stale_since,
            waivers,
            waivers_at,
        }
    }
}

/// What applying one snapshot or record produced.
#[derive(Debug, Default)]
pub struct Applied {
    pub evaluations: Vec<Evaluation>,
    pub transitions: Vec<Transition>,
    pub drifts: Vec<drift::DriftEvent>,
    /// For a snapshot: what of it the store does not hold yet.
    pub novelty: Option<Novelty>,
}

/// What of an applied snapshot is new: the facts whose values were not
/// held and the results not equal to the ones last stored. A store that
/// keeps only changes (`store.compact_snapshots`) writes these, and the
/// snapshot's row confirms the rest (issue 31: an unchanged full snapshot
/// is one row, not ~600).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Novelty {
    /// After a full snapshot, the digest of the asset's facts.
    pub facts_digest: Option<String>,
    /// Indexes into the snapshot's facts of those not held with that
    /// value before it; `None`: all of them (a delta, or a full snapshot
    /// on facts not known whole, as after a restart).
    pub changed_facts: Option<Vec<usize>>,
    /// The paths held before a full snapshot that it does not have (with
    /// `changed_facts`, what turns the held facts into its facts).
    pub removed: Vec<String>,
    /// For each of the evaluations applied: whether it equals the result
    /// last stored for its (asset, control).
    pub unchanged: Vec<bool>,
    /// Results confirmed without evaluating them again (control, status):
    /// a full snapshot of the facts and asset already held, whose every
    /// result this engine stored (see [`Engine::confirming`]).
    pub confirmed: Vec<(String, Status)>,
}

/// The digest of an asset's facts ([`crate::store::rows::facts_digest`]).
pub fn facts_digest(facts: &FactMap) -> String {
    crate::store::rows::facts_digest(facts.iter().map(|(path, value)| (path.as_str(), value.type_name(), value.to_json())))
}

/// The facts before a snapshot was applied, for drift's before values.
enum Before {
    /// A full snapshot replaced them all.
    All(FactMap),
    /// A delta changed these paths, which held these facts.
    Changed(Vec<FactPath>, FactMap),
}

/// The continuous engine: current facts and posture of every asset.
pub struct Engine {
    policies: Arc<PolicySet>,
    assets: HashMap<String, AssetState>,
    posture: Posture,
    detector: detect::Detector,
    attributor: drift::Attributor,
    /// Detections failing (restored or fired) on an asset, so that ageing
    /// resolves them without scanning all posture.
    detections_failing: std::collections::HashSet<(String, usize)>,
    waivers: Arc<crate::waiver::Waivers>,
    /// (waiver id, control id) of the control waivers in force when last
    /// looked at; a change re-evaluates those controls.
    waivers_in_force: std::collections::BTreeSet<(String, String)>,
    /// The time up to which waivers coming into force or ending were
    /// applied to posture. A record observed earlier but evaluated after
    /// (a backlog, an agent that was cut off) is judged by the waivers of
    /// this time, not of its own: the transitions between were applied
    /// before it arrived, and judging it by older waivers would leave
    /// posture out of step with them (a violation raised for a control
    /// waived now, or none for one whose waiver has since expired).
    waivers_applied_at: DateTime<Utc>,
    /// An asset silent this long is not re-evaluated on its old facts
    /// (policy reloads, waiver changes); [`silence`] marks it unknown.
    unknown_after: Option<chrono::Duration>,
    /// The stored labels of assets, read with posture: an alert about an
    /// asset not seen since (a waiver resolving its violation, a detection
    /// ageing out) carries the labels its opening alert had, so it routes
    /// the same way and resolves that alert.
    restored_labels: HashMap<String, BTreeMap<String, String>>,
    /// Threads a full evaluation is shared out over (`None`: the caller's).
    pool: Option<Arc<rayon::ThreadPool>>,
    /// An unchanged full snapshot is confirmed, not evaluated again (the
    /// store keeps changes only: `store.compact_snapshots`).
    confirming: bool,
}

impl Engine {
    pub fn new(policies: Arc<PolicySet>, attribution_window: chrono::Duration) -> Self {
        Engine {
            policies,
            assets: HashMap::new(),
            posture: Posture::default(),
            detector: detect::Detector::default(),
            attributor: drift::Attributor::new(attribution_window),
            detections_failing: Default::default(),
            waivers: Default::default(),
            waivers_in_force: Default::default(),
            waivers_applied_at: DateTime::<Utc>::MIN_UTC,
            unknown_after: None,
            restored_labels: HashMap::new(),
            pool: None,
            confirming: false,
        }
    }

    /// Shares full evaluations (a full snapshot, a policy reload) out over
    /// `pool`; a delta's few controls stay on the caller's thread.
    /// Confirms an unchanged full snapshot's results instead of evaluating
    /// it again (see [`Novelty::confirmed`]): for a store that keeps
    /// changes only.
    pub fn confirming(mut self, on: bool) -> Self {
        self.set_confirming(on);
        self
    }

    pub fn set_confirming(&mut self, on: bool) {
        self.confirming = on;
    }

    /// Whether the store keeps changes only (see [`Self::confirming`]).
    pub fn is_confirming(&self) -> bool {
        self.confirming
    }

    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The labels of an asset: from its latest snapshot, else as stored.
    fn labels_of(&self, asset_id: &str) -> BTreeMap<String, String> {
        match self.assets.get(asset_id) {
            Some(a) => a.asset.labels.clone(),
            None => self.restored_labels.get(asset_id).cloned().unwrap_or_default(),
        }
    }

    /// Sets how long an asset may be silent before its facts are too old to
    /// evaluate again (`None`: never).
    pub fn with_unknown_after(mut self, d: Option<chrono::Duration>) -> Self {
        self.unknown_after = d;
        self
    }

    /// Forgets the facts of assets not seen since `now - after` (their
    /// posture and labels are kept: violations stay open and alerts about
    /// them still route as before), so a fleet's churn does not hold every
    /// host that ever reported. An evicted asset that returns is taken as
    /// after a restart: a full snapshot restores everything; a delta
    /// evaluates only the controls whose facts it carries. Returns how
    /// many were evicted.
    pub fn evict_idle(&mut self, now: DateTime<Utc>, after: chrono::Duration) -> usize {
        let idle: Vec<String> = self.assets.iter().filter(|(_, s)| now - s.last_seen > after).map(|(id, _)| id.clone()).collect();
        for id in &idle {
            if let Some(s) = self.assets.remove(id) {
                self.restored_labels.insert(id.clone(), s.asset.labels);
            }
        }
        idle.len()
    }

    /// Assets whose facts the engine holds.
    pub fn assets_held(&self) -> usize {
        self.assets.len()
    }

    /// Assets whose facts are recent enough to evaluate again at `at`.
    fn current_assets(&self, at: DateTime<Utc>) -> Vec<String> {
        self.assets.iter().filter(|(_, s)| self.unknown_after.is_none_or(|d| at - s.last_seen <= d)).map(|(id, _)| id.clone()).collect()
    }

    /// Swaps in a new set of waivers and re-evaluates what it changes.
    pub fn replace_waivers(&mut self, waivers: Arc<crate::waiver::Waivers>, now: DateTime<Utc>) -> Applied {
        self.waivers = waivers;
        self.refresh_waivers(now)
    }

    /// Forgets which waivers were applied, so that the next
    /// [`Self::replace_waivers`] applies every waiver in force over the
    /// current posture (as at a start, after posture was read).
    pub fn forget_waivers_in_force(&mut self) {
        self.waivers_in_force.clear();
    }

    /// Re-evaluates the controls whose waivers came into force, expired or
    /// were revoked since last looked at: a waived failure becomes `waived`
    /// (its violation resolves), and an expired waiver's control fails
    /// again (a new violation opens and is alerted).
    fn refresh_waivers(&mut self, now: DateTime<Utc>) -> Applied {
        self.waivers_applied_at = self.waivers_applied_at.max(now);
        let in_force = self.waivers.control_waivers_in_force(now);
        let mut out = Applied::default();
        if in_force == self.waivers_in_force {
            return out;
        }
        let changed: std::collections::BTreeSet<String> =
            in_force.symmetric_difference(&self.waivers_in_force).map(|(_, control)| control.clone()).collect();
        self.waivers_in_force = in_force;
        let p = self.policies.clone();
        let which: Vec<usize> = changed.iter().filter_map(|c| p.get(c)).filter(|(_, c)| c.is_check()).map(|(i, _)| i).collect();
        // Fact checks of assets whose facts are here: evaluate again.
        let change_id = format!("waiver-change@{}", now.timestamp());
        let ids = self.current_assets(now);
        for id in &ids {
            let state = &self.assets[id];
            let input = state.input(&self.waivers, self.waivers_applied_at);
            let evaluations = evaluate(&p, Some(&which), &input, self.pool.as_deref(), &change_id, state.sequence, now);
            self.track_all(evaluations, &Before::Changed(Vec::new(), FactMap::new()), &mut out);
        }
        // Detections, and fact checks of assets not seen since a restart:
        // their failure is known, so waived ⇄ fail follows the waivers.
        let entries: Vec<((String, String), PostureEntry)> = self
            .posture
            .iter()
            .filter(|(a, c, e)| {
                changed.contains(*c)
                    && matches!(e.status, Status::Fail | Status::Waived)
                    && !(self.assets.contains_key(*a) && which.iter().any(|i| p.controls[*i].control.id == *c))
            })
            .map(|(a, c, e)| ((a.to_string(), c.to_string()), e.clone()))
            .collect();
        for ((asset_id, control_id), entry) in entries {
            let Some((_, c)) = p.get(&control_id) else { continue };
            let labels = self.assets.get(&asset_id).map(|a| a.asset.labels.clone()).unwrap_or_default();
            let waiver = self.waivers.for_control(&control_id, &asset_id, &labels, now);
            let status = if waiver.is_some() { Status::Waived } else { Status::Fail };
            if status == entry.status {
                continue;
            }
            let evaluation = Evaluation {
                asset_id,
                control_id,
                title: c.control.title.clone(),
                severity: c.control.severity,
                status,
                frameworks: c.frameworks.clone(),
                evidence: Default::default(),
                message: Some(waiver.map(|w| w.describe()).unwrap_or_else(|| "waiver no longer in force; the control still fails".into())),
                evaluated_at: now,
                snapshot_id: change_id.clone(),
                sequence: 0,
                checked: Some(Status::Fail),
            };
            if let (Some(t), _) = self.track(&evaluation) {
                out.transitions.push(t);
            }
            out.evaluations.push(evaluation);
        }
        out
    }

    pub fn policies(&self) -> &Arc<PolicySet> {
        &self.policies
    }

    /// Seeds posture restored from the store, so that a restarted collector
    /// neither re-opens open violations nor misses resolving them.
    pub fn restore(&mut self, asset_id: String, control_id: String, entry: PostureEntry) {
        if let Some((i, c)) = self.policies.get(&control_id) {
            if c.detect.is_some() && entry.status == Status::Fail {
                self.detections_failing.insert((asset_id.clone(), i));
            }
        }
        self.posture.insert_owned(asset_id, control_id, entry);
    }

    /// Replaces all posture by what the store holds (after a consumer-group
    /// rebalance: the store has everything this collector processed, and
    /// what the previous owners of newly assigned partitions did).
    pub fn replace_posture(
        &mut self,
        entries: impl IntoIterator<Item = (String, String, PostureEntry)>,
        labels: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
    ) {
        self.restored_labels = labels.into_iter().collect();
        self.posture.clear();
        self.detections_failing.clear();
        for (asset, control, entry) in entries {
            self.restore(asset, control, entry);
        }
    }

    /// Swaps in a new policy set and evaluates every known asset against
    /// it. Posture of controls that no longer exist is dropped.
    pub fn replace_policies(&mut self, policies: Arc<PolicySet>, at: DateTime<Utc>) -> Applied {
        self.policies = policies;
        self.detector.clear();
        let p = self.policies.clone();
        self.posture.retain(|_, control, _| p.get(control).is_some());
        self.detections_failing.clear();
        let failing: Vec<(String, usize)> = self
            .posture
            .iter()
            .filter(|(_, _, e)| e.status == Status::Fail)
            .filter_map(|(a, c, _)| p.get(c).filter(|(_, c)| c.detect.is_some()).map(|(i, _)| (a.to_string(), i)))
            .collect();
        self.detections_failing.extend(failing);
        let mut out = Applied::default();
        let current = self.current_assets(at);
        // The results of assets not evaluated now were judged by other
        // checks: none is confirmed until evaluated again.
        let evaluated: std::collections::HashSet<&String> = current.iter().collect();
        let idle: Vec<String> = self.assets.keys().filter(|a| !evaluated.contains(a)).cloned().collect();
        for a in &idle {
            self.posture.forget_results(a);
        }
        for id in current {
            let state = &self.assets[&id];
            let input = state.input(&self.waivers, self.waivers_applied_at);
            let evaluations = evaluate(&self.policies, None, &input, self.pool.as_deref(), "policy-reload", state.sequence, at);
            let before = Before::Changed(Vec::new(), FactMap::new());
            self.track_all(evaluations, &before, &mut out);
        }
        out
    }

    /// Counts an audit event or probe result in the detections, and keeps
    /// audit events for drift attribution.
    pub fn observe(&mut self, msg: &Message) -> Applied {
        // Snapshots are not records of a stream detections watch.
        let Some(raw) = detect::Raw::of(msg) else { return Applied::default() };
        match raw {
            detect::Raw::Audit(e) => self.attributor.record(e),
            detect::Raw::Sla(m) if m.probe_id == driftwatch_schemas::HEARTBEAT_PROBE_ID => {
                if let Some(s) = self.assets.get_mut(&m.asset_id) {
                    s.last_seen = s.last_seen.max(m.timestamp);
                    s.last_received = s.last_received.max(m.timestamp);
                }
            }
            detect::Raw::Sla(_) => {}
        }
        // An asset not seen in a snapshot yet: only its kind is unknown,
        // and the record is evidence enough; selectors on labels still hold.
        let state = self.assets.get(msg.asset_id());
        let asset = state.map(|s| &s.asset);
        let changes = self.detector.observe(&self.policies, raw, state.map(|s| &s.cel), |c| match asset {
            Some(a) => c.applies_to(a.kind, &a.labels),
            None => c.control.applies_to.labels.is_empty(),
        });
        self.apply_detections(changes)
    }

    /// Ages detection windows to `now`, resolving detections that no longer
    /// hold (including failing ones restored from the store, whose windows
    /// were lost with the previous process).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Applied {
        let mut changes = self.detector.expire(&self.policies, now);
        for (asset, i) in self.detections_failing.clone() {
            let Some(c) = self.policies.controls.get(i) else { continue };
            let Some(d) = &c.detect else { continue };
            if self.detector.is_firing(&asset, i) || changes.iter().any(|x| x.asset_id == asset && x.control == i) {
                continue;
            }
            let since = self.posture.get(&asset, &c.control.id).map(|p| p.since);
            if since.is_none_or(|s| now - s > d.window) {
                changes.push(detect::Change {
                    control: i,
                    asset_id: asset.clone(),
                    firing: false,
                    record_id: None,
                    evidence: Default::default(),
                    message: "window elapsed since the detection fired".into(),
                    at: now,
                });
            }
        }
        let mut out = self.apply_detections(changes);
        let w = self.refresh_waivers(now);
        out.evaluations.extend(w.evaluations);
        out.transitions.extend(w.transitions);
        out.drifts.extend(w.drifts);
        out
    }

    fn apply_detections(&mut self, changes: Vec<detect::Change>) -> Applied {
        let mut out = Applied::default();
        for ch in changes {
            let Some(c) = self.policies.controls.get(ch.control) else { continue };
            let labels = self.assets.get(&ch.asset_id).map(|a| a.asset.labels.clone()).unwrap_or_default();
            let at = ch.at.max(self.waivers_applied_at);
            let waiver = if ch.firing { self.waivers.for_control(&c.control.id, &ch.asset_id, &labels, at) } else { None };
            let checked = if ch.firing { Status::Fail } else { Status::Pass };
            let evaluation = Evaluation {
                asset_id: ch.asset_id.clone(),
                control_id: c.control.id.clone(),
                title: c.control.title.clone(),
                severity: c.control.severity,
                status: if waiver.is_some() { Status::Waived } else { checked },
                frameworks: c.frameworks.clone(),
                evidence: ch.evidence,
                message: Some(match waiver {
                    Some(w) => format!("{}; {}", w.describe(), ch.message),
                    None => ch.message,
                }),
                evaluated_at: ch.at,
                snapshot_id: ch.record_id.unwrap_or_else(|| format!("window-expired@{}", ch.at.timestamp())),
                sequence: 0,
                checked: Some(checked),
            };
            if ch.firing {
                self.detections_failing.insert((ch.asset_id, ch.control));
            } else {
                self.detections_failing.remove(&(ch.asset_id, ch.control));
            }
            if let (Some(t), _) = self.track(&evaluation) {
                out.transitions.push(t);
            }
            out.evaluations.push(evaluation);
        }
        out
    }

    /// Names the likely causing audit event of each drift that has none
    /// yet. Called when a batch is complete, so that an audit event that
    /// arrived after its snapshot (another topic) still counts.
    pub fn attribute(&self, drifts: &mut [drift::DriftEvent]) {
        for d in drifts {
            self.attributor.attribute(d);
        }
    }

    /// Whether lost deltas make the asset's facts unreliable.
    pub fn is_stale(&self, asset_id: &str) -> bool {
        self.assets.get(asset_id).is_some_and(|a| a.stale_since.is_some())
    }

    pub fn posture(&self, asset_id: &str, control_id: &str) -> Option<&PostureEntry> {
        self.posture.get(asset_id, control_id)
    }

    /// Applies a snapshot and evaluates. A delta older than what was
    /// already applied (an at-least-once redelivery) changes nothing, and
    /// neither does one more than [`MAX_SEQUENCE_JUMP`] ahead of it.
    pub fn apply(&mut self, snap: &ConfigSnapshot) -> Applied {
        self.apply_received(snap, snap.collected_at)
    }

    /// [`Self::apply`] of a snapshot the collector received at `received`
    /// (its own clock). Which results equal the last stored ones
    /// ([`Novelty::unchanged`]) is known only while this engine wrote
    /// them: the results of an asset that comes back from silence (the
    /// silence task may have stored `unknown` over them, see [`silence`])
    /// or whose facts were let go are stored again.
    pub fn apply_received(&mut self, snap: &ConfigSnapshot, received: DateTime<Utc>) -> Applied {
        let returning = match self.assets.get(&snap.asset.id) {
            None => true,
            // Less a tenth: the store keeps whole seconds.
            Some(s) => self.unknown_after.is_some_and(|after| received - s.last_received >= after * 9 / 10),
        };
        if returning {
            self.posture.forget_results(&snap.asset.id);
        } else if self.confirming && snap.kind == SnapshotKind::Full {
            if let Some(applied) = self.confirm_unchanged(snap, received) {
                return applied;
            }
        }
        let state = self.assets.entry(snap.asset.id.clone()).or_insert_with(|| AssetState {
            asset: snap.asset.clone(),
            facts: FactMap::new(),
            cel: facts::CelFacts::default(),
            sequence: 0,
            stale_since: None,
            complete: false,
            digest: None,
            last_seen: snap.collected_at,
            last_received: received,
        });
        state.last_seen = state.last_seen.max(snap.collected_at);
        state.last_received = state.last_received.max(received);
        // A full snapshot re-evaluates everything; a delta only the controls
        // that read a changed or removed path.
        let mut which: Option<Vec<usize>> = None;
        let mut novelty = Novelty::default();
        let before = match snap.kind {
            SnapshotKind::Full => {
                let old = std::mem::replace(&mut state.facts, snap.facts.iter().map(|f| (f.path.clone(), f.value.clone())).collect());
                if state.complete {
                    // The held facts were a whole snapshot's: only the
                    // difference is new.
                    novelty.changed_facts =
                        Some(snap.facts.iter().enumerate().filter(|(_, f)| old.get(&f.path) != Some(&f.value)).map(|(i, _)| i).collect());
                    novelty.removed = old.keys().filter(|p| !state.facts.contains_key(*p)).cloned().collect();
                }
                state.digest = Some(facts_digest(&state.facts));
                novelty.facts_digest = state.digest.clone();
                state.cel = facts::CelFacts::build(&state.facts);
                state.complete = true;
                if let Some((from, to)) = state.stale_since.take() {
                    tracing::info!(asset = %snap.asset.id, sequence = snap.sequence, "full snapshot received; asset no longer stale (gap was {from}→{to})");
                }
                Before::All(old)
            }
            SnapshotKind::Delta => {
                if snap.sequence <= state.sequence {
                    return Applied::default();
                }
                if state.sequence > 0 && snap.sequence - state.sequence > MAX_SEQUENCE_JUMP {
                    // No agent sends a million deltas between two that
                    // arrive: applied, it would make every real delta
                    // after it look old until the next full snapshot.
                    tracing::warn!(asset = %snap.asset.id, last = state.sequence, got = snap.sequence, "delta's sequence jumps too far ahead; not applied");
                    return Applied::default();
                }
                let gap = state.sequence > 0 && snap.sequence > state.sequence + 1 && state.stale_since.is_none();
                if gap {
                    tracing::warn!(asset = %snap.asset.id, last = state.sequence, got = snap.sequence, "sequence gap: deltas lost; asset stale until the next full snapshot");
                    state.stale_since = Some((state.sequence, snap.sequence));
                }
                let changed: Vec<FactPath> = snap
                    .facts
                    .iter()
                    .map(|f| f.path.as_str())
                    .chain(snap.removed_paths.iter().map(String::as_str))
                    .filter_map(|p| FactPath::parse(p).ok())
                    .collect();
                // What the changed paths held, for drift's before values.
                let old: FactMap =
                    changed.iter().flat_map(|p| facts::facts_under(&state.facts, p)).filter(|(_, v)| *v != FactValue::Null).collect();
                for f in &snap.facts {
                    state.facts.insert(f.path.clone(), f.value.clone());
                }
                for p in &snap.removed_paths {
                    state.facts.remove(p);
                }
                state.cel.update(&state.facts, &changed);
                state.digest = None;
                // A gap makes every result unknown, not only the changed ones.
                if !gap {
                    which = Some(self.policies.affected(&changed));
                }
                Before::Changed(changed, old)
            }
        };
        state.asset = snap.asset.clone();
        state.sequence = snap.sequence;
        let input = state.input(&self.waivers, self.waivers_applied_at);
        let evaluations =
            evaluate(&self.policies, which.as_deref(), &input, self.pool.as_deref(), &snap.snapshot_id, snap.sequence, snap.collected_at);
        let mut out = Applied::default();
        novelty.unchanged = self.track_all(evaluations, &before, &mut out);
        out.novelty = Some(novelty);
        out
    }

    /// A full snapshot of exactly the facts and asset held, whose every
    /// result would be the one this engine last stored: confirmed from
    /// posture without building its CEL values or running a check. `None`
    /// when it must be evaluated: the asset's facts are not held whole, or
    /// are stale; anything differs (facts as sent in path order, labels,
    /// kind); a control that applies has no result whose digest this
    /// engine knows (a restore, a silence, a control new since); or a
    /// waiver bears on a failing control at the snapshot's time (its
    /// status or message could change). Evaluation is a function of those
    /// alone (checks read facts, not the clock).
    fn confirm_unchanged(&mut self, snap: &ConfigSnapshot, received: DateTime<Utc>) -> Option<Applied> {
        let state = self.assets.get(&snap.asset.id)?;
        if !state.complete || state.stale_since.is_some() || state.asset != snap.asset || snap.facts.len() != state.facts.len() {
            return None;
        }
        let sorted = snap.facts.windows(2).all(|w| w[0].path < w[1].path);
        if !sorted || !snap.facts.iter().all(|f| state.facts.get(&f.path) == Some(&f.value)) {
            return None;
        }
        let waivers_at = snap.collected_at.max(self.waivers_applied_at);
        let mut confirmed = Vec::new();
        for c in self.policies.controls.iter().filter(|c| c.is_check() && c.applies_to(snap.asset.kind, &snap.asset.labels)) {
            let p = self.posture.get(&snap.asset.id, &c.control.id)?;
            p.result?;
            if p.checked == Some(Status::Fail) || p.status == Status::Waived {
                let waived = self.waivers.for_control(&c.control.id, &snap.asset.id, &snap.asset.labels, waivers_at);
                if waived.is_some() || p.status != Status::Fail {
                    return None;
                }
            }
            confirmed.push((c.control.id.clone(), p.status));
        }
        let digest = state.digest.clone().unwrap_or_else(|| facts_digest(&state.facts));
        for (control, _) in &confirmed {
            if let Some(p) = self.posture.get_mut(&snap.asset.id, control) {
                p.last_evaluated = snap.collected_at;
            }
        }
        let state = self.assets.get_mut(&snap.asset.id)?;
        state.digest = Some(digest.clone());
        state.sequence = snap.sequence;
        state.last_seen = state.last_seen.max(snap.collected_at);
        state.last_received = state.last_received.max(received);
        let novelty = Novelty { facts_digest: Some(digest), changed_facts: Some(Vec::new()), confirmed, ..Default::default() };
        Some(Applied { novelty: Some(novelty), ..Default::default() })
    }

    /// Tracks posture for fact-check evaluations, collecting transitions
    /// and drift events into `out`; returns, for each evaluation, whether
    /// it equals the pair's last result.
    fn track_all(&mut self, evaluations: Vec<Evaluation>, before: &Before, out: &mut Applied) -> Vec<bool> {
        let digests = facts::ListDigests::default(); // of `before`'s facts
        let mut unchanged = Vec::with_capacity(evaluations.len());
        for ev in &evaluations {
            // Drift is a change of what the check said on trustworthy facts:
            // unknown spells and waivers do not count.
            let from = self.posture.get(&ev.asset_id, &ev.control_id).and_then(|p| p.checked);
            let (transition, same) = self.track(ev);
            unchanged.push(same);
            if let Some(t) = transition {
                out.transitions.push(t);
            }
            let Some(to) = ev.checked else { continue };
            let Some(from) = from.filter(|f| *f != to) else { continue };
            let Some((_, c)) = self.policies.get(&ev.control_id) else { continue };
            let before = match before {
                Before::All(old) => facts::evidence(old, &c.read_texts, &c.constants, &digests),
                Before::Changed(changed, old) => drift::before_evidence(&ev.evidence, changed, old, &c.reads, &c.constants, &digests),
            };
            let mut d = drift::DriftEvent::new(from, ev.clone(), before);
            d.asset_labels = self.labels_of(&ev.asset_id);
            out.drifts.push(d);
        }
        out.evaluations.extend(evaluations);
        unchanged
    }

    /// Updates posture with one evaluation; returns a transition if a
    /// violation opens or resolves, and whether the result equals the
    /// pair's last one (all that its stored row holds but the time and
    /// snapshot: status, severity, evidence, message).
    fn track(&mut self, ev: &Evaluation) -> (Option<Transition>, bool) {
        let result = evaluate::result_digest(ev);
        let prev = self.posture.get(&ev.asset_id, &ev.control_id);
        let unchanged = prev.is_some_and(|p| p.result == Some(result));
        let (previous, prev_checked) = (prev.map(|p| p.status), prev.and_then(|p| p.checked));
        let open = prev.and_then(|p| p.violation_id.clone());
        let since = match prev {
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
            // A waiver accepts the failure: the violation closes, and opens
            // anew when the waiver ends.
            (Status::Pass | Status::Waived, Some(id)) => (None, Some((id, TransitionKind::Resolved))),
            // Errors, unknown and missing facts neither open nor resolve:
            // they are not evidence either way.
            (_, open) => (open, None),
        };
        let checked = ev.checked.or(prev_checked);
        let entry = PostureEntry { status: ev.status, since, last_evaluated: ev.evaluated_at, violation_id, checked, result: Some(result) };
        self.posture.insert(&ev.asset_id, &ev.control_id, entry);
        let transition = transition.map(|(violation_id, kind)| Transition {
            violation_id,
            kind,
            previous,
            evaluation: ev.clone(),
            asset_labels: self.labels_of(&ev.asset_id),
        });
        (transition, unchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::{AssetKind, Fact};
    use std::path::Path;

    /// The `root` control both test packs start with.
    const ROOT: &str = r#"  - id: root
    title: root login off
    severity: high
    check: sshd.config.permitrootlogin == "no"
    frameworks: {soc2: [CC6.1], pci-dss: ["2.2.6"]}
"#;

    fn policies() -> Arc<PolicySet> {
        let text = format!("pack: t\ncontrols:\n{ROOT}")
            + r#"  - id: shadow
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
        Arc::new(PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), &text).unwrap()))
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

    /// After a restart posture is restored but facts are not: until the
    /// asset's next full snapshot, a delta runs only the checks whose every
    /// fact it holds (a fact it lacks is unknown, not missing).
    #[test]
    fn deltas_without_a_full_snapshot_run_only_checks_on_held_facts() {
        let text = "pack: t\ncontrols:\n".to_string()
            + r#"  - id: both
    title: root login and X11 forwarding off
    severity: high
    check: sshd.config.permitrootlogin == "no" && sshd.config.x11forwarding == "no"
    frameworks: {soc2: [CC6.1]}
"#;
        let policies = Arc::new(PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), &text).unwrap()));
        let mut e = Engine::new(policies, chrono::Duration::minutes(10));
        let since = Utc::now() - chrono::Duration::hours(1);
        e.replace_posture(
            [("a".to_string(), "both".to_string(), PostureEntry::restored(Status::Fail, since, since, Some("v".into())))],
            [],
        );

        // Only one of the two facts: no result, no false drift to not_applicable.
        let a = e.apply(&snap(7, SnapshotKind::Delta, &[("sshd.config.x11forwarding", "no".into())], &[]));
        assert!(a.evaluations.is_empty() && a.drifts.is_empty() && a.transitions.is_empty(), "{a:?}");
        assert_eq!(e.posture("a", "both").unwrap().status, Status::Fail);

        // Both held now: the check runs, and the violation resolves.
        let b = e.apply(&snap(8, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(status(&b, "both"), Status::Pass);
        assert_eq!(b.transitions[0].violation_id, "v");

        // A full snapshot is all the facts: a missing one is not collected.
        let c = e.apply(&snap(9, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(status(&c, "both"), Status::NotApplicable);
    }

    #[test]
    fn fail_opens_pass_resolves_and_missing_is_not_applicable() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
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
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        assert_eq!(e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[])).evaluations.len(), 3);
        let d = e.apply(&snap(2, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        assert_eq!(d.evaluations.iter().map(|x| x.control_id.as_str()).collect::<Vec<_>>(), vec!["shadow"]);
        let n = e.apply(&snap(3, SnapshotKind::Delta, &[("os.id", "debian".into())], &[]));
        assert!(n.evaluations.is_empty(), "nothing reads os.id");
        assert_eq!(e.posture("a", "root").unwrap().status, Status::Fail, "untouched posture stays");
    }

    /// Per evaluation of `a`: (control, unchanged).
    fn unchanged(a: &Applied) -> Vec<(&str, bool)> {
        let n = a.novelty.as_ref().expect("a snapshot's novelty");
        a.evaluations.iter().map(|e| e.control_id.as_str()).zip(n.unchanged.iter().copied()).collect()
    }

    #[test]
    fn a_snapshot_knows_which_facts_and_results_are_new() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let root = ("sshd.config.permitrootlogin", FactValue::from("no"));
        let shadow = (r#"files["/etc/shadow"].mode"#, FactValue::from("0640"));
        let first = e.apply(&snap(1, SnapshotKind::Full, &[root.clone(), shadow.clone()], &[]));
        let n = first.novelty.as_ref().unwrap();
        assert_eq!(n.changed_facts, None, "facts not known whole before: all are new");
        assert!(n.unchanged.iter().all(|u| !u), "no result was stored before");
        let digest = n.facts_digest.clone().expect("a full snapshot's digest");

        let again = e.apply(&snap(2, SnapshotKind::Full, &[root.clone(), shadow.clone()], &[]));
        let n = again.novelty.as_ref().unwrap();
        assert_eq!((n.changed_facts.as_deref(), n.removed.len()), (Some(&[][..]), 0), "nothing changed");
        assert_eq!(n.facts_digest.as_ref(), Some(&digest), "equal facts, equal digest");
        assert!(unchanged(&again).iter().all(|(_, u)| *u), "{:?}", unchanged(&again));

        // The shadow file's mode changes and root login's fact goes: only
        // those are new, and only the results reading them.
        let changed = e.apply(&snap(3, SnapshotKind::Full, &[(r#"files["/etc/shadow"].mode"#, "0600".into())], &[]));
        let n = changed.novelty.as_ref().unwrap();
        assert_eq!((n.changed_facts.as_deref(), n.removed.as_slice()), (Some(&[0][..]), &["sshd.config.permitrootlogin".to_string()][..]));
        assert_ne!(n.facts_digest.as_ref(), Some(&digest));
        for (control, same) in unchanged(&changed) {
            assert!(!same, "{control}: its evidence changed");
        }
        // A delta's results are compared as well.
        let delta = e.apply(&snap(4, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0600".into())], &[]));
        assert_eq!(unchanged(&delta), [("shadow", true)]);
    }

    #[test]
    fn an_unchanged_full_snapshot_is_confirmed_without_evaluating_it() {
        let t = Utc::now();
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10)).confirming(true);
        // In path order, as agents send them.
        let facts = [(r#"files["/etc/shadow"].mode"#, FactValue::from("0640")), ("sshd.config.permitrootlogin", FactValue::from("yes"))];
        let full = |seq, facts: &[(&str, FactValue)]| {
            let mut s = snap(seq, SnapshotKind::Full, facts, &[]);
            s.collected_at = t + chrono::Duration::minutes(seq);
            s
        };
        let first = e.apply(&full(1, &facts));
        let statuses: Vec<(String, Status)> = first.evaluations.iter().map(|e| (e.control_id.clone(), e.status)).collect();
        assert_eq!(statuses.len(), 3);
        let again = e.apply(&full(2, &facts));
        assert!(again.evaluations.is_empty() && again.transitions.is_empty(), "nothing evaluated");
        let n = again.novelty.as_ref().unwrap();
        assert_eq!(n.confirmed, statuses, "every result confirmed with its status");
        assert_eq!(n.facts_digest, first.novelty.as_ref().unwrap().facts_digest);
        assert_eq!(
            e.posture("a", "root").unwrap().last_evaluated,
            t + chrono::Duration::minutes(2),
            "evaluated now, as far as anyone reads"
        );
        assert_eq!(e.posture("a", "root").unwrap().since, t + chrono::Duration::minutes(1));

        // A delta and back: the same facts again are confirmed too.
        e.apply(&snap(3, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        e.apply(&snap(4, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert!(e.apply(&full(5, &facts)).evaluations.is_empty());
        // Facts not in path order, other labels, or other facts: evaluated.
        let mut unsorted = full(6, &facts);
        unsorted.facts.reverse();
        assert_eq!(e.apply(&unsorted).evaluations.len(), 3);
        let mut relabelled = full(7, &facts);
        relabelled.asset.labels.insert("env".into(), "prod".into());
        assert_eq!(e.apply(&relabelled).evaluations.len(), 3);
        assert_eq!(e.apply(&full(8, &facts[1..])).evaluations.len(), 3, "a fact gone");
        // A waiver bearing on a failing control: evaluated, and waived.
        e.apply(&full(9, &facts));
        e.replace_waivers(root_waiver(t, t + chrono::Duration::days(1)), t + chrono::Duration::minutes(9));
        let waived = e.apply(&full(10, &facts));
        assert_eq!(status(&waived, "root"), Status::Waived);
        // Without confirming, every full snapshot is evaluated.
        e.set_confirming(false);
        assert_eq!(e.apply(&full(11, &facts)).evaluations.len(), 3);
    }

    #[test]
    fn results_are_stored_again_after_a_restore_a_silence_or_an_eviction() {
        let t = Utc::now();
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10)).with_unknown_after(Some(chrono::Duration::minutes(10)));
        let full = |seq| snap(seq, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]);
        e.apply_received(&full(1), t);
        let same = e.apply_received(&full(2), t + chrono::Duration::minutes(4));
        assert!(unchanged(&same).iter().all(|(_, u)| *u));
        // A heartbeat keeps it from silence.
        e.observe(&Message::Sla(driftwatch_schemas::SlaMeasurement::heartbeat("a", t + chrono::Duration::minutes(10))));
        assert!(unchanged(&e.apply_received(&full(3), t + chrono::Duration::minutes(13))).iter().all(|(_, u)| *u));
        // Silent (no snapshot, no heartbeat) for the silence's nine
        // tenths: the silence task may have stored `unknown` over its
        // results.
        let back = e.apply_received(&full(4), t + chrono::Duration::minutes(22));
        assert!(unchanged(&back).iter().all(|(_, u)| !u), "{:?}", unchanged(&back));
        assert!(unchanged(&e.apply_received(&full(5), t + chrono::Duration::minutes(23))).iter().all(|(_, u)| *u));
        // Restored posture knows no result's digest.
        let entries: Vec<_> = e.posture.iter().map(|(a, c, p)| (a.to_string(), c.to_string(), p.clone())).collect();
        e.replace_posture(
            entries.into_iter().map(|(a, c, p)| (a, c, PostureEntry::restored(p.status, p.since, p.last_evaluated, None))),
            [],
        );
        assert!(unchanged(&e.apply_received(&full(6), t + chrono::Duration::minutes(24))).iter().all(|(_, u)| !u));
        // Facts let go: the asset comes back as new.
        assert_eq!(e.evict_idle(t + chrono::Duration::days(1), chrono::Duration::hours(1)), 1);
        assert!(unchanged(&e.apply_received(&full(7), t + chrono::Duration::minutes(25))).iter().all(|(_, u)| !u));
    }

    #[test]
    fn stale_deltas_are_ignored_and_removed_paths_apply() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        e.apply(&snap(5, SnapshotKind::Full, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        assert!(e.apply(&snap(4, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0777".into())], &[])).evaluations.is_empty());
        let a = e.apply(&snap(6, SnapshotKind::Delta, &[], &[r#"files["/etc/shadow"].mode"#]));
        assert_eq!(status(&a, "shadow"), Status::NotApplicable);
    }

    #[test]
    fn idle_assets_are_evicted_and_come_back_as_after_a_restart() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let first = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        let opened = first.transitions[0].violation_id.clone();
        let now = Utc::now();
        assert_eq!(e.evict_idle(now, chrono::Duration::hours(1)), 0, "seen just now");
        assert_eq!(e.evict_idle(now + chrono::Duration::hours(2), chrono::Duration::hours(1)), 1);
        assert_eq!(e.assets_held(), 0);
        // Posture is kept: the violation is still open, and the next full
        // snapshot resolves it.
        assert_eq!(e.posture("a", "root").unwrap().violation_id.as_deref(), Some(opened.as_str()));
        let back = e.apply(&snap(2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(status(&back, "root"), Status::Pass);
        assert_eq!(back.transitions[0].kind, TransitionKind::Resolved);
        assert_eq!(e.assets_held(), 1);
    }

    #[test]
    fn a_delta_jumping_far_ahead_is_not_applied_and_real_deltas_still_are() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        e.apply(&snap(5, SnapshotKind::Full, &[(r#"files["/etc/shadow"].mode"#, "0640".into())], &[]));
        let forged = e.apply(&snap(i64::MAX, SnapshotKind::Delta, &[(r#"files["/etc/shadow"].mode"#, "0777".into())], &[]));
        assert!(forged.evaluations.is_empty());
        let real = e.apply(&snap(6, SnapshotKind::Delta, &[], &[r#"files["/etc/shadow"].mode"#]));
        assert_eq!(status(&real, "shadow"), Status::NotApplicable, "the next real delta applies");
        assert!(!e.is_stale("a"));
    }

    /// `a["b"]` and `a.b` are one path: facts are keyed the one way, so
    /// evidence finds them and a delta written either way replaces them.
    #[test]
    fn a_sequence_gap_makes_every_result_unknown_until_a_full_snapshot() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let first = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        let opened = first.transitions[0].violation_id.clone();
        e.apply(&snap(2, SnapshotKind::Delta, &[], &[]));
        assert!(!e.is_stale("a"));
        let a = e.apply(&snap(5, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert!(e.is_stale("a"));
        assert_eq!(a.evaluations.len(), 3, "every control, not only those reading what changed");
        assert!(a.evaluations.iter().all(|x| x.status == Status::Unknown));
        assert!(a.evaluations[0].message.as_deref().unwrap().starts_with("sequence_gap: deltas 3..4 were lost"), "{:?}", a.evaluations[0]);
        assert!(a.transitions.is_empty() && a.drifts.is_empty(), "unknown neither resolves nor drifts");
        assert_eq!(e.posture("a", "root").unwrap().violation_id.as_deref(), Some(opened.as_str()));
        let full = e.apply(&snap(6, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert!(!e.is_stale("a"));
        assert_eq!(status(&full, "root"), Status::Pass);
        assert_eq!(full.transitions[0].kind, TransitionKind::Resolved);
        // Drift compares trustworthy results: fail (before the gap) → pass.
        assert_eq!(full.drifts.iter().map(|d| (d.control(), d.from)).collect::<Vec<_>>(), vec![("root", Status::Fail)]);
    }

    #[test]
    fn facts_a_family_could_not_read_make_the_result_unknown() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let errors = FactValue::List(vec!["/etc/shadow: Permission denied (os error 13)".into()]);
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("files.errors", errors)], &[]));
        assert_eq!(status(&a, "shadow"), Status::Unknown);
        let msg = a.evaluations.iter().find(|x| x.control_id == "shadow").unwrap().message.clone().unwrap();
        assert_eq!(msg, "fact_unreadable: /etc/shadow: Permission denied (os error 13)");
        assert_eq!(status(&a, "root"), Status::NotApplicable, "no sshd error: simply not collected");
        let other = FactValue::List(vec!["/etc/gshadow: Permission denied".into()]);
        let b = e.apply(&snap(2, SnapshotKind::Full, &[("files.errors", other)], &[]));
        assert_eq!(status(&b, "shadow"), Status::NotApplicable, "an error about another file says nothing of this one");
    }

    fn waivers(text: &str) -> Arc<crate::waiver::Waivers> {
        Arc::new(crate::waiver::Waivers::new(crate::waiver::load_text(Path::new("w.yaml"), text).unwrap()))
    }

    fn root_waiver(starts: DateTime<Utc>, expires: DateTime<Utc>) -> Arc<crate::waiver::Waivers> {
        waivers(&format!(
            "waivers:\n  - id: w\n    control: root\n    scope: {{assets: [a]}}\n    justification: legacy\n    approver: ciso\n    risk: high\n    starts: {}\n    expires: {}\n",
            starts.to_rfc3339(),
            expires.to_rfc3339()
        ))
    }

    #[test]
    fn a_waived_failure_is_waived_and_fails_again_when_the_waiver_expires() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let now = Utc::now();
        e.replace_waivers(root_waiver(now - chrono::Duration::hours(1), now + chrono::Duration::minutes(5)), now);
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert_eq!(status(&a, "root"), Status::Waived);
        assert!(a.transitions.is_empty(), "no violation while waived");
        assert!(a.evaluations[0].message.as_deref().unwrap().starts_with("waived by w until"));
        assert!(e.tick(now + chrono::Duration::minutes(1)).transitions.is_empty());
        let expired = e.tick(now + chrono::Duration::minutes(6));
        assert_eq!(status(&expired, "root"), Status::Fail);
        assert_eq!(expired.transitions.len(), 1);
        assert_eq!(expired.transitions[0].kind, TransitionKind::Opened);
        assert!(expired.drifts.is_empty(), "the configuration did not change");
        assert!(e.tick(now + chrono::Duration::minutes(7)).evaluations.is_empty(), "once");
    }

    #[test]
    fn a_waiver_coming_into_force_closes_the_violation() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let now = Utc::now();
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        let opened = a.transitions[0].violation_id.clone();
        let w = e.replace_waivers(root_waiver(now + chrono::Duration::minutes(1), now + chrono::Duration::days(30)), now);
        assert!(w.evaluations.is_empty(), "not started yet");
        let started = e.tick(now + chrono::Duration::minutes(2));
        assert_eq!(status(&started, "root"), Status::Waived);
        assert_eq!(
            (started.transitions[0].kind, started.transitions[0].violation_id.as_str()),
            (TransitionKind::Resolved, opened.as_str())
        );
        // A waiver for another asset or control changes nothing.
        let other = waivers("waivers:\n  - id: o\n    control: root\n    scope: {assets: [b]}\n    justification: j\n    approver: a\n    risk: low\n    expires: 2100-01-01T00:00:00Z\n");
        let mut f = Engine::new(policies(), chrono::Duration::minutes(10));
        f.replace_waivers(other, now);
        let b = f.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert_eq!(status(&b, "root"), Status::Fail);
    }

    /// A record observed before a waiver came into force but evaluated
    /// after is judged by the waivers posture was brought up to: waived,
    /// no violation; and one observed while a waiver was in force but
    /// evaluated after it expired fails.
    #[test]
    fn a_late_record_is_judged_by_the_waivers_applied_since() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        let now = Utc::now();
        let mut late = snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]);
        late.collected_at = now - chrono::Duration::seconds(30);
        e.replace_waivers(root_waiver(now - chrono::Duration::seconds(1), now + chrono::Duration::days(1)), now);
        let a = e.apply(&late);
        assert_eq!(status(&a, "root"), Status::Waived);
        assert!(a.transitions.is_empty(), "no violation for a control waived now");

        let mut f = Engine::new(policies(), chrono::Duration::minutes(10));
        f.replace_waivers(root_waiver(now - chrono::Duration::hours(1), now - chrono::Duration::seconds(1)), now);
        let b = f.apply(&late);
        assert_eq!(status(&b, "root"), Status::Fail, "the waiver had expired when the record was evaluated");
        assert_eq!(b.transitions.len(), 1);
        // A record newer than the waivers applied is judged at its own time.
        let mut g = Engine::new(policies(), chrono::Duration::minutes(10));
        let then = now - chrono::Duration::hours(1);
        g.replace_waivers(root_waiver(then, now - chrono::Duration::minutes(30)), then);
        let mut old = late.clone();
        old.collected_at = now - chrono::Duration::minutes(45);
        assert_eq!(status(&g.apply(&old), "root"), Status::Waived);
        (old.collected_at, old.sequence) = (now - chrono::Duration::minutes(15), 2);
        assert_eq!(status(&g.apply(&old), "root"), Status::Fail);
    }

    #[test]
    fn a_waived_detection_is_waived_and_fails_when_revoked() {
        let mut e = Engine::new(detections(), chrono::Duration::minutes(10));
        let now = Utc::now();
        let w = waivers("waivers:\n  - id: pentest\n    control: brute\n    scope: {fleet: true}\n    justification: pentest\n    approver: a\n    risk: low\n    expires: 2100-01-01T00:00:00Z\n");
        e.replace_waivers(w.clone(), now);
        e.observe(&failed_login("e1", now));
        let fired = e.observe(&failed_login("e2", now));
        assert_eq!(fired.evaluations[0].status, Status::Waived);
        assert!(fired.transitions.is_empty());
        let mut revoked = (*w).clone();
        revoked.list[0].revoked_at = Some(now);
        let r = e.replace_waivers(Arc::new(revoked), now + chrono::Duration::seconds(1));
        assert_eq!(r.evaluations[0].status, Status::Fail);
        assert_eq!(r.transitions[0].kind, TransitionKind::Opened);
    }

    /// Posture nested by asset: an update replaces, retain drops assets
    /// left with nothing, iteration sees every pair.
    #[test]
    fn posture_is_kept_by_asset_and_control() {
        let at = Utc::now();
        let entry = |s| PostureEntry::restored(s, at, at, None);
        let mut p = Posture::default();
        p.insert("a", "x", entry(Status::Pass));
        p.insert("a", "y", entry(Status::Fail));
        p.insert("b", "x", entry(Status::Pass));
        p.insert("a", "x", entry(Status::Fail));
        assert_eq!(p.get("a", "x").map(|e| e.status), Some(Status::Fail), "replaced");
        assert_eq!(p.iter().count(), 3);
        p.retain(|_, control, _| control == "y");
        let left: Vec<(&str, &str, &PostureEntry)> = p.iter().collect();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].0, left[0].1), ("a", "y"));
        assert!(!p.0.contains_key("b"), "an asset left with nothing is dropped");
        p.clear();
        assert!(p.get("a", "y").is_none());
    }

    #[test]
    fn restored_posture_prevents_a_second_open() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        e.restore("a".into(), "root".into(), PostureEntry::restored(Status::Fail, Utc::now(), Utc::now(), Some("v1".into())));
        let a = e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert!(a.transitions.is_empty());
        let b = e.apply(&snap(2, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(b.transitions[0].violation_id, "v1");
    }

    fn detections() -> Arc<PolicySet> {
        let text = format!("pack: d\ncontrols:\n{ROOT}")
            + r#"  - id: brute
    title: brute force
    severity: high
    detect: {stream: audit, match: 'event.action == "ssh_login_failed"', group_by: [event.actor.user], threshold: 2, window: 1m}
    frameworks: {soc2: [CC7.2], pci-dss: ["10.2.1"]}
"#;
        Arc::new(PolicySet::new(crate::policy::load_text(Path::new("d.yaml"), &text).unwrap()))
    }

    /// An audit event of asset `a`.
    fn audit(id: &str, action: &str, user: &str, object: Option<&str>, at: DateTime<Utc>) -> Message {
        Message::Audit(driftwatch_schemas::AuditEvent {
            event_id: id.into(),
            asset_id: "a".into(),
            hostname: "h".into(),
            source: driftwatch_schemas::AuditSource::Auditd,
            timestamp: at,
            actor: driftwatch_schemas::Actor { user: Some(user.into()), ..Default::default() },
            action: action.into(),
            object: object.map(String::from),
            outcome: driftwatch_schemas::Outcome::Unknown,
            source_address: None,
            raw: String::new(),
            extra: Default::default(),
        })
    }

    fn failed_login(id: &str, at: DateTime<Utc>) -> Message {
        audit(id, "ssh_login_failed", "alice", None, at)
    }

    #[test]
    fn a_detection_opens_on_threshold_and_resolves_when_the_window_passes() {
        let mut e = Engine::new(detections(), chrono::Duration::minutes(10));
        let t0 = Utc::now() - chrono::Duration::seconds(30);
        assert!(e.observe(&failed_login("e1", t0)).evaluations.is_empty());
        assert!(e.observe(&failed_login("e1", t0)).evaluations.is_empty(), "a redelivered event counts once");
        let fired = e.observe(&failed_login("e2", t0 + chrono::Duration::seconds(5)));
        assert_eq!(fired.transitions.len(), 1);
        assert_eq!(fired.transitions[0].kind, TransitionKind::Opened);
        let ev = &fired.evaluations[0];
        assert_eq!((ev.control_id.as_str(), ev.status, ev.snapshot_id.as_str()), ("brute", Status::Fail, "e2"));
        assert_eq!(ev.evidence.get("detect.group"), Some(&FactValue::from("alice")));
        assert!(fired.drifts.is_empty(), "detections are not configuration drift");
        assert!(e.tick(Utc::now()).transitions.is_empty(), "still inside the window");
        let later = e.tick(Utc::now() + chrono::Duration::minutes(2));
        assert_eq!(later.transitions.len(), 1);
        assert_eq!(later.transitions[0].kind, TransitionKind::Resolved);
        assert_eq!(later.transitions[0].violation_id, fired.transitions[0].violation_id);
    }

    #[test]
    fn a_restored_failing_detection_resolves_after_its_window_with_the_stored_labels() {
        let mut e = Engine::new(detections(), chrono::Duration::minutes(10));
        let since = Utc::now() - chrono::Duration::seconds(30);
        let labels = BTreeMap::from([("team".to_string(), "web".to_string())]);
        e.replace_posture(
            [("a".to_string(), "brute".to_string(), PostureEntry::restored(Status::Fail, since, since, Some("v".into())))],
            [("a".to_string(), labels.clone())],
        );
        assert!(e.tick(Utc::now()).transitions.is_empty());
        let t = e.tick(Utc::now() + chrono::Duration::minutes(1));
        assert_eq!(t.transitions[0].violation_id, "v");
        // Nothing came from the asset since: its resolve routes and matches
        // as the opening alert did.
        assert_eq!(t.transitions[0].asset_labels, labels);
    }

    #[test]
    fn drift_carries_before_and_after_and_its_cause() {
        let mut e = Engine::new(detections(), chrono::Duration::minutes(10));
        let t0 = Utc::now();
        e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        e.observe(&audit("edit", "syscall", "mallory", Some("/etc/ssh/sshd_config"), t0));
        let mut a = e.apply(&snap(2, SnapshotKind::Delta, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert_eq!(a.drifts.len(), 1);
        let d = &mut a.drifts[0];
        assert_eq!((d.from, d.evaluation.status, d.direction()), (Status::Pass, Status::Fail, "regressed"));
        assert_eq!(d.before.get("sshd.config.permitrootlogin"), Some(&FactValue::from("no")));
        assert_eq!(d.evaluation.evidence.get("sshd.config.permitrootlogin"), Some(&FactValue::from("yes")));
        e.attribute(std::slice::from_mut(d));
        assert_eq!(d.cause.as_ref().map(|c| (c.event_id.as_str(), c.user.as_deref())), Some(("edit", Some("mallory"))));

        // A full snapshot that fixes it: remediated, before from the old facts.
        let b = e.apply(&snap(3, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "no".into())], &[]));
        assert_eq!(b.drifts[0].direction(), "remediated");
        assert_eq!(b.drifts[0].before.get("sshd.config.permitrootlogin"), Some(&FactValue::from("yes")));
    }

    #[test]
    fn replacing_policies_reevaluates_known_assets_and_drops_removed_controls() {
        let mut e = Engine::new(policies(), chrono::Duration::minutes(10));
        e.apply(&snap(1, SnapshotKind::Full, &[("sshd.config.permitrootlogin", "yes".into())], &[]));
        assert!(e.posture("a", "shadow").is_some());
        let stricter = r#"pack: t
controls:
  - id: root
    title: root login off
    severity: high
    check: sshd.config.permitrootlogin == "yes"
    frameworks: {soc2: [CC6.1], pci-dss: ["2.2.6"]}
"#;
        let set = Arc::new(PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), stricter).unwrap()));
        let r = e.replace_policies(set, Utc::now());
        assert_eq!(r.evaluations.len(), 1);
        assert_eq!(r.transitions[0].kind, TransitionKind::Resolved);
        assert!(e.posture("a", "shadow").is_none());
    }

    /// A full evaluation shared out over threads gives what one thread
    /// gives, in the controls' order: statuses, messages, evidence (a long
    /// list's digest computed once and shared) and transitions.
    #[test]
    fn an_evaluation_over_threads_is_the_one_on_the_loop_thread() {
        let mut text = String::from("pack: t\ncontrols:\n");
        for i in 0..120 {
            let check = match i % 5 {
                0 => format!("svc.k{i} == \"v{i}\""),                // pass
                1 => format!("svc.k{i} == \"other\""),               // fail
                2 => format!("svc.missing{i} == \"x\""),             // not applicable
                3 => format!("svc.k{i} + 1 == 2"),                   // error
                _ => format!("!(\"pkg{i}\" in packages.installed)"), // a long list, by name
            };
            text.push_str(&format!("  - {{id: c{i:03}, title: t, severity: low, check: '{check}', frameworks: {{soc2: [CC6.1]}}}}\n"));
        }
        let set = Arc::new(PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), &text).unwrap()));
        let packages: Vec<String> = (0..300).map(|i| format!("pkg{}", i * 2)).collect();
        let mut facts: Vec<(String, FactValue)> =
            (0..120).map(|i| (format!("svc.k{i}"), FactValue::from(format!("v{i}").as_str()))).collect();
        facts.push(("packages.installed".into(), FactValue::List(packages)));
        let facts: Vec<(&str, FactValue)> = facts.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        let full = snap(1, SnapshotKind::Full, &facts, &[]);
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap());
        let (mut one, mut many) =
            (Engine::new(set.clone(), chrono::Duration::minutes(10)), Engine::new(set, chrono::Duration::minutes(10)).with_pool(pool));
        let (a, b) = (one.apply(&full), many.apply(&full));
        let json = |x: &Applied| (serde_json::to_value(&x.evaluations).unwrap(), serde_json::to_value(&x.transitions).unwrap());
        assert_eq!(a.evaluations.len(), 120);
        assert_eq!(a.transitions.len(), 36, "24 failing checks and 12 of a package installed open violations");
        assert_eq!(json(&a), json(&b));
        let ids: Vec<&str> = b.evaluations.iter().map(|e| e.control_id.as_str()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in the controls' order");
        assert_eq!(status(&b, "c003"), Status::Error);
        assert!(b.evaluations[4].evidence.contains_key("packages.installed#sha256"));
    }
}
