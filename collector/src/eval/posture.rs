//! Posture: the status of every (asset, control), and what a change of it
//! is (a violation opened or resolved).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Evaluation, Status};

/// A violation opened or resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub violation_id: String,
    pub kind: TransitionKind,
    pub previous: Option<Status>,
    pub evaluation: Evaluation,
    /// The asset's labels (for routing alerts by team, env, …).
    pub asset_labels: BTreeMap<String, String>,
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
    /// Since when the control has had this status.
    pub since: DateTime<Utc>,
    pub last_evaluated: DateTime<Utc>,
    /// The open violation, while the control fails.
    pub violation_id: Option<String>,
    /// The last trustworthy check result (through `unknown` spells; a
    /// waived control's is `fail`): what drift compares.
    pub checked: Option<Status>,
    /// A digest of the last result (status, severity, evidence, message;
    /// `None` when not known, as after a restore): an evaluation equal to
    /// it is confirmed, not stored again.
    pub result: Option<u64>,
}

impl PostureEntry {
    /// An entry as restored from a stored status.
    pub fn restored(status: Status, since: DateTime<Utc>, last_evaluated: DateTime<Utc>, violation_id: Option<String>) -> Self {
        PostureEntry { status, since, last_evaluated, violation_id, checked: status.checked(), result: None }
    }

    /// The (asset, control) and entry of a status the store kept.
    pub fn from_stored(s: crate::store::views::LatestStatus) -> (String, String, PostureEntry) {
        (s.asset_id, s.control_id, PostureEntry::restored(s.status, s.since, s.last_evaluated, s.violation_id))
    }
}

/// Posture of every (asset, control), nested by asset: a lookup (one per
/// evaluation) borrows its keys, and only a new entry allocates them. A
/// control's id, the same on every asset, is shared by all of them
/// ([`super::intern`]).
#[derive(Default)]
pub(super) struct Posture(pub(super) HashMap<String, HashMap<Cow<'static, str>, PostureEntry>>);

/// A control id as a posture key: shared when it can be.
fn control_key(id: &str) -> Cow<'static, str> {
    match super::intern::intern(id) {
        Some(shared) => Cow::Borrowed(shared),
        None => Cow::Owned(id.to_string()),
    }
}

impl Posture {
    pub(super) fn get(&self, asset_id: &str, control_id: &str) -> Option<&PostureEntry> {
        self.0.get(asset_id)?.get(control_id)
    }

    pub(super) fn get_mut(&mut self, asset_id: &str, control_id: &str) -> Option<&mut PostureEntry> {
        self.0.get_mut(asset_id)?.get_mut(control_id)
    }

    pub(super) fn insert(&mut self, asset_id: &str, control_id: &str, entry: PostureEntry) {
        let controls = match self.0.get_mut(asset_id) {
            Some(c) => c,
            None => self.0.entry(asset_id.to_string()).or_default(),
        };
        match controls.get_mut(control_id) {
            Some(e) => *e = entry,
            None => {
                controls.insert(control_key(control_id), entry);
            }
        }
    }

    /// [`Self::insert`] with keys already owned (a restore: no lookup
    /// first, no copy).
    pub(super) fn insert_owned(&mut self, asset_id: String, control_id: String, entry: PostureEntry) {
        self.0.entry(asset_id).or_default().insert(control_key(&control_id), entry);
    }

    /// Forgets the digests of `asset_id`'s last results: each is stored
    /// again at its next evaluation.
    pub(super) fn forget_results(&mut self, asset_id: &str) {
        for e in self.0.get_mut(asset_id).into_iter().flat_map(|c| c.values_mut()) {
            e.result = None;
        }
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Keeps the entries for which `keep(asset, control, entry)` holds.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, &str, &PostureEntry) -> bool) {
        self.0.retain(|asset, controls| {
            controls.retain(|control, e| keep(asset, control, e));
            !controls.is_empty()
        });
    }

    /// Every (asset, control, entry).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str, &PostureEntry)> {
        self.0.iter().flat_map(|(a, controls)| controls.iter().map(move |(c, e)| (a.as_str(), c.as_ref(), e)))
    }
}
