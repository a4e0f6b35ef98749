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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::watch;

use super::{Waiver, Waivers};
use crate::alert::conditions::Conditions;
use crate::alert::matcher::Labels;
use crate::alert::model::Alert;
use crate::alert::runner::Alerting;
use crate::policy::PolicySet;
use crate::store::prelude::*;

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

/// `waiver_expiring` alerts for waivers in force that end within `days`.
pub fn reminders(waivers: &[Waiver], days: u32, now: DateTime<Utc>) -> Vec<Alert> {
    if days == 0 {
        return Vec::new();
    }
    waivers
        .iter()
        .filter(|w| w.in_force(now) && w.spec.expires - now <= chrono::Duration::days(i64::from(days)))
        .map(|w| {
            let target = w.target().to_string();
            let mut labels = Labels::new();
            labels.insert("alertname".into(), "waiver_expiring".into());
            labels.insert("severity".into(), "medium".into());
            labels.insert("waiver".into(), w.spec.id.clone());
            labels.insert(if w.spec.control.is_some() { "control" } else { "requirement" }.into(), target.clone());
            let left = w.spec.expires - now;
            let summary = format!(
                "waiver {} of {target} expires in {}d {}h ({}); the control will fail again",
                w.spec.id,
                left.num_days(),
                left.num_hours() % 24,
                w.spec.expires.format("%Y-%m-%dT%H:%M:%SZ")
            );
            let mut annotations = BTreeMap::new();
            annotations.insert("title".into(), summary.clone());
            annotations.insert("summary".into(), summary);
            annotations.insert("approver".into(), w.spec.approver.clone());
            annotations.insert("justification".into(), w.spec.justification.clone());
            annotations.insert("risk".into(), w.spec.risk.as_str().into());
            annotations.insert("expires".into(), w.spec.expires.to_rfc3339());
            if !w.spec.ticket.is_empty() {
                annotations.insert("ticket".into(), w.spec.ticket.clone());
            }
            let mut a = Alert { labels, annotations, starts_at: now, ends_at: None, instance: String::new(), one_shot: false };
            a.instance = format!("{}@{}", a.fingerprint(), w.spec.expires.timestamp());
            a
        })
        .collect()
}

/// Everything the task needs.
pub struct Runner {
    pub dir: PathBuf,
    pub store: SharedStore,
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub publish: Arc<watch::Sender<Arc<Waivers>>>,
    pub settings: WaiverSettings,
    pub alerting: Alerting,
    pub leader: Arc<AtomicBool>,
}

impl Runner {
    /// Runs until the process ends.
    pub async fn run(self) {
        let mut conditions = Conditions::restore(&ALERTNAMES, &self.alerting).await;
        let mut declared: Vec<Waiver> = Vec::new();
        let mut stored: Vec<Waiver> = Vec::new();
        let mut flagged: BTreeSet<String> = BTreeSet::new();
        let mut load_error = String::new();
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.refresh_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Matching against known assets reads the store: when the set
        // changes, and at most once a minute otherwise.
        let mut assets_checked: Option<std::time::Instant> = None;
        let mut unmatched: Vec<String> = Vec::new();
        loop {
            tick.tick().await;
            let now = Utc::now();
            match super::load_dir(&self.dir) {
                Ok(d) => {
                    declared = d;
                    load_error.clear();
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != load_error {
                        tracing::error!("waiver files in {} are invalid; keeping the waivers in force:\n{text}", self.dir.display());
                        load_error = text;
                    }
                }
            }
            match self.store.waivers().await {
                Ok(s) => stored = Waiver::from_rows(s),
                Err(e) => tracing::warn!(error = %e, "reading stored waivers failed; keeping the last ones read"),
            }
            let leader = self.leader.load(Ordering::SeqCst);
            if leader {
                let plan = sync_plan(&declared, &stored, now);
                let mut wrote = false;
                for w in &plan {
                    match self.store.put_waiver(&w.row(chrono::Utc::now())).await {
                        Ok(()) => wrote = true,
                        Err(e) => tracing::warn!(waiver = %w.spec.id, error = %e, "recording a declared waiver failed; trying again"),
                    }
                }
                if wrote {
                    if let Ok(s) = self.store.waivers().await {
                        stored = Waiver::from_rows(s);
                    }
                }
            }
            let mut set = Waivers::new(merge(&declared, &stored));
            set.flags = super::flags(
                &set.list.iter().filter(|w| w.revoked_at.is_none() && w.spec.expires > now).cloned().collect::<Vec<_>>(),
                &self.policies.borrow(),
            );
            let changed = self.publish.borrow().list != set.list;
            if changed || assets_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                match self.store.asset_labels().await {
                    Ok(assets) => {
                        unmatched = if assets.is_empty() { Vec::new() } else { matching_nothing(&set.list, &assets, now) };
                        assets_checked = Some(std::time::Instant::now());
                    }
                    Err(e) => tracing::debug!(error = %e, "reading asset labels failed"),
                }
            }
            set.flags.extend(unmatched.iter().cloned());
            for f in &set.flags {
                if flagged.insert(f.clone()) {
                    tracing::warn!("{f}");
                }
            }
            if **self.publish.borrow() != set {
                tracing::info!(waivers = set.list.len(), in_force = set.list.iter().filter(|w| w.in_force(now)).count(), "waivers updated");
                self.publish.send_replace(Arc::new(set.clone()));
            }
            if leader {
                conditions.update(reminders(&set.list, self.settings.reminder_days, now), &self.alerting, now);
            }
        }
    }
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
    fn reminders_fire_within_the_window_and_name_the_waiver() {
        let w = declared();
        let before = w[0].spec.expires - chrono::Duration::days(20);
        assert!(reminders(&w, 14, before).is_empty());
        let near = w[0].spec.expires - chrono::Duration::days(3);
        let r = reminders(&w, 14, near);
        assert_eq!(r[0].labels.get("waiver").map(String::as_str), Some("w1"));
        assert_eq!(r[0].labels.get("control").map(String::as_str), Some("root"));
        assert!(r[0].annotations["summary"].contains("expires in 3d 0h"), "{:?}", r[0].annotations);
        assert!(reminders(&w, 14, w[0].spec.expires).is_empty(), "expired: the reminder resolves");
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
