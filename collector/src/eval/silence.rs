//! Silent assets: a fact check whose asset has sent neither a snapshot nor
//! a heartbeat for `evaluation.unknown_after_secs` is `unknown` (reason
//! `asset_silent`), never left passing on stale evidence.
//!
//! It runs from the store, on the collector doing fleet-wide work, so it
//! covers assets that no collector has seen since a restart. The unknown
//! result is stamped at the instant the asset went silent: posture at a
//! past instant reads right, and a fresh snapshot (newer) replaces it.
//! Unknown neither opens nor resolves violations (see [`super::Engine`]),
//! so the owning collector's engine needs no word of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Evaluation, Status};
use crate::evidence::Chain;
use crate::policy::PolicySet;
use crate::store::prelude::*;
use crate::store::waivers::SilentResult;
use crate::store::{Batch, StoreError};

/// The `unknown` results for the latest results of silent assets. Only
/// fact checks: detections are about events, and silence is none.
pub fn unknown_results(policies: &PolicySet, silent: &[SilentResult], unknown_after: chrono::Duration) -> Vec<Evaluation> {
    silent
        .iter()
        .filter(|r| r.status != Status::Unknown && r.status != Status::NotApplicable)
        .filter_map(|r| {
            let (_, c) = policies.get(&r.control_id)?;
            if c.detect.is_some() {
                return None;
            }
            let at = (r.last_seen + unknown_after).max(r.last_evaluated + chrono::Duration::seconds(1));
            Some(Evaluation {
                asset_id: r.asset_id.clone(),
                control_id: r.control_id.clone(),
                title: c.control.title.clone(),
                severity: c.control.severity,
                status: Status::Unknown,
                frameworks: c.frameworks.clone(),
                evidence: Default::default(),
                message: Some(format!(
                    "asset_silent: no snapshot or heartbeat since {}; last result {}",
                    r.last_seen.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.status.as_str()
                )),
                evaluated_at: at,
                snapshot_id: format!("asset-silent@{}", r.last_seen.timestamp()),
                sequence: 0,
                checked: None,
            })
        })
        .collect()
}

/// One pass: marks the results of assets silent at `now`, as a batch of
/// `chain` (this task's own evidence chain); returns how many.
pub async fn mark(
    policies: &PolicySet,
    store: &SharedStore,
    chain: &mut Chain,
    unknown_after: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let silent = store.silent_results(now - unknown_after).await?;
    let evaluations = unknown_results(policies, &silent, unknown_after);
    if evaluations.is_empty() {
        return Ok(0);
    }
    let (results, assets) =
        (evaluations.len(), evaluations.iter().map(|e| e.asset_id.as_str()).collect::<std::collections::BTreeSet<_>>().len());
    let mut batch = Batch::new();
    batch.add_evaluations(evaluations, &[]);
    let mut next = chain.clone();
    batch.link = next.seal(&batch, now);
    store.write(&batch).await?;
    *chain = next;
    tracing::warn!(results, assets, "assets went silent: their results are unknown until they report again");
    Ok(results)
}

/// Runs until the process ends, while this collector runs fleet-wide work.
pub async fn run(
    policies: watch::Receiver<Arc<PolicySet>>,
    store: SharedStore,
    unknown_after: chrono::Duration,
    every: Duration,
    leader: Arc<AtomicBool>,
) {
    let mut chain = Chain::new(format!("{}/silence", Chain::default_id()));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !leader.load(Ordering::SeqCst) {
            continue;
        }
        let set = policies.borrow().clone();
        if let Err(e) = mark(&set, &store, &mut chain, unknown_after, Utc::now()).await {
            tracing::warn!(error = %e, "checking for silent assets failed; trying again next interval");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn silent_fact_checks_become_unknown_at_the_instant_the_asset_went_silent() {
        let text = r#"pack: t
controls:
  - id: root
    title: root login off
    severity: high
    check: sshd.config.permitrootlogin == "no"
    frameworks: {soc2: [CC6.1], pci-dss: ["2.2.6"]}
  - id: brute
    title: brute force
    severity: high
    detect: {stream: audit, match: 'event.action == "x"', threshold: 2, window: 1m}
    frameworks: {soc2: [CC7.2], pci-dss: ["10.2.1"]}
"#;
        let set = PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), text).unwrap());
        let seen = Utc::now() - chrono::Duration::hours(3);
        let r = |control: &str, status| SilentResult {
            asset_id: "a".into(),
            control_id: control.into(),
            status,
            last_evaluated: seen,
            last_seen: seen,
        };
        let out = unknown_results(
            &set,
            &[r("root", Status::Pass), r("brute", Status::Fail), r("gone", Status::Pass), r("root", Status::Unknown)],
            chrono::Duration::hours(2),
        );
        assert_eq!(out.len(), 1, "only the existing fact check that is not already unknown");
        assert_eq!(out[0].status, Status::Unknown);
        assert_eq!(out[0].evaluated_at, seen + chrono::Duration::hours(2));
        assert!(out[0].message.as_deref().unwrap().starts_with("asset_silent: "));
    }
}
