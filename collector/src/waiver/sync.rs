//! Keeps the collector's waivers current: reads the declared ones (waiver
//! files in the policy directory) and the stored ones (API, CLI, history)
//! every `waivers.refresh_secs`, publishes the merged set to the engine,
//! flags waivers that cannot take effect, and alerts `waiver_expiring`
//! `waivers.reminder_days` before a waiver ends.
//!
//! The collector running fleet-wide work also records the declared waivers
//! in the store (a new or changed declaration becomes a new version; one
//! removed from its file is revoked), so their history survives edits.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Waiver;

/// Who declared waivers are recorded as created by.
pub const DECLARED_BY: &str = "policies";
/// The alert this task owns.
pub const ALERTNAMES: [&str; 1] = ["waiver_expiring"];

/// The `waivers` section of the collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WaiverSettings {
    /// How often declared and stored waivers are read again.
    pub refresh_secs: u64,
    /// Alert this many days before a waiver expires (0: never).
    pub reminder_days: u32,
}

impl Default for WaiverSettings {
    fn default() -> Self {
        WaiverSettings { refresh_secs: 10, reminder_days: 14 }
    }
}

/// The merged set: stored waivers, with declared ones as their files say
/// now (a declaration not yet recorded still takes effect; its start, when
/// the file gives none, is when it was first recorded).
pub fn merge(declared: &[Waiver], stored: &[Waiver]) -> Vec<Waiver> {
    let by_id: BTreeMap<&str, &Waiver> = stored.iter().map(|w| (w.id(), w)).collect();
    let mut out: BTreeMap<String, Waiver> = stored.iter().map(|w| (w.spec.id.clone(), w.clone())).collect();
    for d in declared {
        let mut w = d.clone();
        match by_id.get(d.id()) {
            Some(s) if s.created_by != DECLARED_BY => {
                tracing::error!(waiver = %d.spec.id, declared = %d.source, "a waiver with this id was created through the API; the declared one is ignored");
                continue;
            }
            Some(s) if w.spec.starts.is_none() => w.spec.starts = s.spec.starts,
            _ => {}
        }
        out.insert(w.spec.id.clone(), w);
    }
    out.into_values().collect()
}

/// What to write so that the store matches the declarations: new or
/// changed ones (a start is fixed when first recorded), and revocations
/// of declared waivers no longer in any file.
pub fn sync_plan(declared: &[Waiver], stored: &[Waiver], now: DateTime<Utc>) -> Vec<Waiver> {
    let by_id: BTreeMap<&str, &Waiver> = stored.iter().map(|w| (w.id(), w)).collect();
    let mut out = Vec::new();
    for d in declared {
        let mut w = d.clone();
        match by_id.get(d.id()) {
            None => {
                w.spec.starts = w.spec.starts.or(Some(now));
                out.push(w);
            }
            Some(s) if s.created_by == DECLARED_BY => {
                w.spec.starts = w.spec.starts.or(s.spec.starts);
                if w.spec != s.spec || w.source != s.source || s.revoked_at.is_some() {
                    out.push(w);
                }
            }
            Some(_) => {}
        }
    }
    let ids: BTreeSet<&str> = declared.iter().map(Waiver::id).collect();
    for s in stored {
        if s.created_by == DECLARED_BY && s.revoked_at.is_none() && !ids.contains(s.id()) {
            let mut w = s.clone();
            w.revoked_at = Some(now);
            w.revoked_by = format!("removed from {}", s.source);
            out.push(w);
        }
    }
    out
}

/// Waivers in force at `now` whose scope matches none of the known assets.
pub fn matching_nothing(waivers: &[Waiver], assets: &BTreeMap<String, BTreeMap<String, String>>, now: DateTime<Utc>) -> Vec<String> {
    waivers
        .iter()
        .filter(|w| w.in_force(now) && !assets.iter().any(|(id, labels)| w.spec.scope.matches(id, labels)))
        .map(|w| format!("{}: waiver {}: its scope matches no known asset", w.source, w.spec.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn declared() -> Vec<Waiver> {
        let text = "waivers:\n  - id: w1\n    control: root\n    scope: {assets: [a]}\n    justification: j\n    approver: ciso\n    risk: low\n    expires: 2030-01-01T00:00:00Z\n";
        super::super::load_text(Path::new("w.yaml"), text).unwrap()
    }

    #[test]
    fn declarations_are_recorded_once_then_only_when_changed_or_removed() {
        let now = Utc::now();
        let plan = sync_plan(&declared(), &[], now);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].spec.starts, Some(now), "the start is fixed when first recorded");
        let stored = plan;
        assert!(sync_plan(&declared(), &stored, now).is_empty(), "nothing changed");
        let mut edited = declared();
        edited[0].spec.justification = "new".into();
        let plan = sync_plan(&edited, &stored, now);
        assert_eq!((plan.len(), plan[0].spec.starts), (1, Some(now)), "a new version keeps the start");
        let plan = sync_plan(&[], &stored, now);
        assert_eq!(plan[0].revoked_at, Some(now));
        assert_eq!(plan[0].revoked_by, "removed from w.yaml:2");
    }

    #[test]
    fn api_waivers_are_kept_and_not_shadowed_by_a_declaration() {
        let mut api = declared().remove(0);
        api.created_by = "api:ops".into();
        api.spec.justification = "from the API".into();
        let merged = merge(&declared(), &[api.clone()]);
        assert_eq!(merged, vec![api.clone()]);
        assert!(sync_plan(&declared(), &[api], Utc::now()).is_empty());
    }

    #[test]
    fn a_waiver_matching_no_known_asset_is_flagged() {
        let w = declared();
        let now = Utc::now();
        let known: BTreeMap<String, BTreeMap<String, String>> = [("b".to_string(), BTreeMap::new())].into();
        assert_eq!(matching_nothing(&w, &known, now).len(), 1);
        let known: BTreeMap<String, BTreeMap<String, String>> = [("a".to_string(), BTreeMap::new())].into();
        assert!(matching_nothing(&w, &known, now).is_empty());
    }
}
