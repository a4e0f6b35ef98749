//! The scores task: records compliance scores over time (the `scores` table, read by the
//! posture dashboard): every `evaluation.score_interval_secs`, fleet-wide
//! and per value of every asset label, computed exactly as the `posture`
//! command does, with and without waivers; and, whenever the policy set
//! changes, the catalog of the controls in force (the `controls` table:
//! their framework mapping and severity, which dashboards join to results).
//! Only the collector running fleet-wide work records them. With
//! `alerts.posture`, each recording's fleet scores raise or resolve the
//! posture conditions ([`crate::score::posture`]); with `alerts.gaps`, the
//! gaps of the same results (with their tracking) raise or resolve their
//! reminders ([`crate::score::tracking`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::alerting::Alerting;
use super::conditions::Conditions;
use super::{Leader, OnLeader};
use crate::policy::PolicySet;
use crate::score::posture::{self, PostureAlerts};
use crate::score::tracking::{self, GapReminders};
use crate::score::{scores, GapFilter, GroupBy, Score, WaiversAt};
use crate::store::prelude::*;
use crate::waiver::Waivers;

use crate::store::rows::ScoreRow;

/// Where the scores task reads its inputs and raises its conditions.
pub struct Inputs {
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub waivers: watch::Receiver<Arc<Waivers>>,
    pub store: SharedStore,
    /// With the posture conditions' settings, where they are raised.
    pub posture: Option<(PostureAlerts, Alerting)>,
    /// With the gap reminders' settings, where they are raised.
    pub gaps: Option<(GapReminders, Alerting)>,
}

/// Runs until the process ends, with the packs and waivers in force.
pub async fn run(inputs: Inputs, every: Duration, leader: Leader) {
    let Inputs { policies, waivers, store, posture, gaps } = inputs;
    let mut conditions = match &posture {
        Some((_, alerting)) => Some(Conditions::restore(&posture::ALERTNAMES, alerting).await),
        None => None,
    };
    let mut reminders = match &gaps {
        Some((_, alerting)) => Some(Conditions::restore(&tracking::ALERTNAMES, alerting).await),
        None => None,
    };
    let mut history = posture::History::default();
    // Leadership and policy changes are looked at every second (the
    // catalog follows at once); scores are recorded every `every`, the
    // first one interval after the start (not in the middle of restoring).
    let mut passes = OnLeader::new(every.min(Duration::from_secs(1)), Duration::ZERO, leader);
    // The policy set whose catalog is written (by this process, since it
    // last became leader).
    let mut cataloged: Option<Arc<PolicySet>> = None;
    let mut next_scores = tokio::time::Instant::now() + every;
    loop {
        if passes.next().await.first {
            cataloged = None;
            // A drop is measured from what this leader has seen.
            history = posture::History::default();
        }
        let (set, w) = (policies.borrow().clone(), waivers.borrow().clone());
        if !cataloged.as_ref().is_some_and(|c| Arc::ptr_eq(c, &set)) {
            match store.put_controls(&crate::policy::control_rows(&set, &Utc::now())).await {
                Ok(()) => cataloged = Some(set.clone()),
                Err(e) => tracing::warn!(error = %e, "writing the controls catalog failed; trying again in a second"),
            }
        }
        if tokio::time::Instant::now() < next_scores {
            continue;
        }
        next_scores = tokio::time::Instant::now() + every;
        let recorded = record(&set, &w, &store).await;
        if !passes.leading() {
            // Leadership was lost while recording: the gauges it just set
            // are the new leader's to publish.
            crate::metrics::leadership(false);
            continue;
        }
        match recorded {
            Ok((fleet, results)) => {
                let now = Utc::now();
                if let (Some((cfg, alerting)), Some(held)) = (&posture, conditions.as_mut()) {
                    history.record(&fleet, cfg, now);
                    held.update(posture::conditions(&fleet, &history, cfg, now), alerting, now);
                }
                if let (Some((cfg, alerting)), Some(held)) = (&gaps, reminders.as_mut()) {
                    match store.gap_events().await {
                        Ok(events) => {
                            let listed = GapFilter::default().gaps(
                                &set,
                                &results,
                                None,
                                WaiversAt { waivers: &w, at: now },
                                now,
                                &tracking::latest(&events),
                            );
                            held.update(tracking::conditions(&listed, cfg, now), alerting, now);
                        }
                        Err(e) => tracing::warn!(error = %e, "reading gap tracking failed; reminders are looked at next interval"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "recording scores failed; trying again next interval"),
        }
    }
}

/// One recording; returns the fleet scores (one per framework) and the
/// results they were computed from.
pub async fn record(set: &PolicySet, waivers: &Waivers, store: &SharedStore) -> anyhow::Result<(Vec<Score>, Vec<crate::score::Result>)> {
    let results = store.current_results().await?;
    let now = Utc::now();
    let w = WaiversAt { waivers, at: now };
    let at = crate::store::secs(&now);
    let mut rows = Vec::new();
    let mut push = |scope: &str, key: &str, s: Score| {
        rows.push(ScoreRow {
            at,
            framework: s.framework,
            scope: scope.into(),
            label_key: key.into(),
            group_value: s.group,
            score: s.score,
            passing: s.passing as u32,
            partial: s.partial as u32,
            failing: s.failing as u32,
            applicable: s.applicable as u32,
            waived: s.waived as u32,
            score_without_waivers: s.score_without_waivers,
            catalog_requirements: s.catalog_requirements.map(|n| n as u32),
            not_assessed: s.not_assessed.map(|n| n as u32),
            coverage: s.coverage,
            attested: s.attested.map(|n| n as u32),
        })
    };
    let fleet = scores(set, &results, None, &GroupBy::Fleet, w);
    for s in fleet.iter().cloned() {
        let m = &crate::metrics::METRICS.compliance_score;
        m.with_label_values(&[s.framework.as_str(), "honoured"]).set(s.score);
        m.with_label_values(&[s.framework.as_str(), "ignored"]).set(s.score_without_waivers);
        if let Some(c) = s.coverage {
            crate::metrics::METRICS.compliance_coverage.with_label_values(&[s.framework.as_str()]).set(c);
        }
        if let (Some(total), Some(not), Some(attested)) = (s.catalog_requirements, s.not_assessed, s.attested) {
            let m = &crate::metrics::METRICS.compliance_requirements;
            let automated = total.saturating_sub(not + attested);
            for (evidence, n) in [("automated", automated), ("attested", attested), ("not_assessed", not)] {
                m.with_label_values(&[s.framework.as_str(), evidence]).set(n as i64);
            }
        }
        push("fleet", "", s);
    }
    // Per section of each framework's catalog (SOC 2 category, CSF function…).
    for s in scores(set, &results, None, &GroupBy::Section, w) {
        push("section", "", s);
    }
    // Open violations: failing results (a waived one is closed).
    let mut open: std::collections::BTreeMap<&str, i64> = ["low", "medium", "high", "critical"].into_iter().map(|s| (s, 0)).collect();
    for r in results.iter().filter(|r| r.status == crate::eval::Status::Fail) {
        if let Some((_, c)) = set.get(&r.control_id) {
            *open.entry(c.control.severity.as_str()).or_default() += 1;
        }
    }
    for (severity, n) in open {
        crate::metrics::METRICS.open_violations.with_label_values(&[severity]).set(n);
    }
    let keys: BTreeSet<String> = results.iter().flat_map(|r| r.labels.keys().cloned()).collect();
    for k in keys {
        for s in scores(set, &results, None, &GroupBy::Label(k.clone()), w) {
            push("label", &k, s);
        }
    }
    store.put_scores(&rows).await?;
    Ok((fleet, results))
}
