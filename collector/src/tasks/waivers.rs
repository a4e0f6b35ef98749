//! The waiver task: every `waivers.refresh_secs` it reads the declared
//! waivers (YAML beside the packs) and the stored ones, records declared
//! ones that changed (on the leader), publishes the merged set to the
//! engine, flags waivers that match nothing, and raises expiry reminders
//! (`waiver_expiring`). The pure steps are in [`crate::waiver::sync`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::alerting::Alerting;
use super::conditions::Conditions;
use crate::alert::reminders::reminders;
use crate::policy::PolicySet;
use crate::store::prelude::*;
use crate::waiver::sync::{matching_nothing, merge, sync_plan, WaiverSettings, ALERTNAMES};
use crate::waiver::{Waiver, Waivers};

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
            match crate::waiver::load_dir(&self.dir) {
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
            set.flags = crate::waiver::flags(
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
