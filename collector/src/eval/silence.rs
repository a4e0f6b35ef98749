//! Silent assets: a fact check whose asset has sent neither a snapshot nor
//! a heartbeat for `evaluation.unknown_after_secs` is `unknown` (reason
//! `asset_silent`), never left passing on stale evidence.
//!
//! [`crate::tasks::silence`] runs it from the store, on the collector doing
//! fleet-wide work, so it covers assets that no collector has seen since a restart. The unknown
//! result is stamped at the instant the asset went silent: posture at a
//! past instant reads right, and a fresh snapshot (newer) replaces it.
//! Unknown neither opens nor resolves violations (see [`super::Engine`]),
//! so the owning collector's engine needs no word of it.

use super::{Evaluation, Status};
use crate::policy::PolicySet;
use crate::store::waivers::SilentResult;

/// The `unknown` results for the latest results of silent assets. Only
/// fact checks: detections are about events, and silence is none;
/// attestations expire on their own.
pub fn unknown_results(policies: &PolicySet, silent: &[SilentResult], unknown_after: chrono::Duration) -> Vec<Evaluation> {
    silent
        .iter()
        .filter(|r| r.status != Status::Unknown && r.status != Status::NotApplicable)
        .filter_map(|r| {
            let (_, c) = policies.get(&r.control_id)?;
            if !c.is_check() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
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
