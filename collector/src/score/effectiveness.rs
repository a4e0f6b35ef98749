//! Operating effectiveness over a period (what a SOC 2 Type II auditor
//! asks): for [from, to], per asset, the share of time each control — and
//! each framework requirement, which holds while all its applicable checks
//! pass — passed, and the exact intervals when it did not.
//!
//! Time before the first evaluation is "no evidence" and time a control
//! was not applicable is neither passing nor failing: both are left out of
//! the share and reported apart. Time `unknown` (evidence missing) or
//! `waived` is not passing time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::eval::Status;
use crate::policy::PolicySet;

pub use crate::store::views::History;

/// A stretch of time when something did not pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `fail` or `error` (for a requirement: the worst of its checks).
    pub status: Status,
}

/// Effectiveness of one control or requirement on one asset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effectiveness {
    pub asset_id: String,
    /// A control id, or `framework:requirement`.
    pub subject: String,
    pub passing_seconds: i64,
    /// Seconds with a pass, fail or error result.
    pub evaluated_seconds: i64,
    pub no_evidence_seconds: i64,
    pub not_applicable_seconds: i64,
    /// passing / evaluated; `None` with nothing evaluated.
    pub pass_share: Option<f64>,
    pub not_passing: Vec<Interval>,
}

/// [start, end) with a status (`None`: no evidence yet).
type Segment = (DateTime<Utc>, DateTime<Utc>, Option<Status>);

fn segments(h: &History, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Segment> {
    let mut out = Vec::new();
    let (mut start, mut status) = (from, h.initial);
    for &(at, s) in &h.changes {
        if at <= from || at > to {
            if at <= from {
                status = Some(s);
            }
            continue;
        }
        if Some(s) != status {
            if at > start {
                out.push((start, at, status));
            }
            start = at;
            status = Some(s);
        }
    }
    if to > start {
        out.push((start, to, status));
    }
    out
}

fn summarize(asset_id: &str, subject: String, segs: &[Segment]) -> Effectiveness {
    let mut e = Effectiveness {
        asset_id: asset_id.to_string(),
        subject,
        passing_seconds: 0,
        evaluated_seconds: 0,
        no_evidence_seconds: 0,
        not_applicable_seconds: 0,
        pass_share: None,
        not_passing: Vec::new(),
    };
    for &(a, b, s) in segs {
        let secs = (b - a).num_seconds();
        match s {
            None => e.no_evidence_seconds += secs,
            Some(Status::NotApplicable) => e.not_applicable_seconds += secs,
            Some(Status::Pass) => {
                e.passing_seconds += secs;
                e.evaluated_seconds += secs;
            }
            Some(s) => {
                e.evaluated_seconds += secs;
                match e.not_passing.last_mut() {
                    Some(last) if last.to == a && last.status == s => last.to = b,
                    _ => e.not_passing.push(Interval { from: a, to: b, status: s }),
                }
            }
        }
    }
    if e.evaluated_seconds > 0 {
        e.pass_share = Some(e.passing_seconds as f64 / e.evaluated_seconds as f64);
    }
    e
}

/// The requirement's status from its checks' statuses at one instant.
fn combine(statuses: &[Option<Status>]) -> Option<Status> {
    let known: Vec<Status> = statuses.iter().flatten().copied().filter(|s| *s != Status::NotApplicable).collect();
    if known.is_empty() {
        return if statuses.contains(&Some(Status::NotApplicable)) { Some(Status::NotApplicable) } else { None };
    }
    // The worst status wins; waived and unknown time is not passing time.
    [Status::Fail, Status::Unknown, Status::Error, Status::Waived].into_iter().find(|s| known.contains(s)).or(Some(Status::Pass))
}

/// Per asset: every control's effectiveness, then every requirement's (of
/// `framework`, or of all frameworks) as `framework:id`.
pub fn compute(
    policies: &PolicySet,
    histories: &[History],
    framework: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Effectiveness> {
    let mut out = Vec::new();
    // asset → requirement → the segments of each mapped control.
    let mut reqs: BTreeMap<&str, BTreeMap<String, Vec<Vec<Segment>>>> = BTreeMap::new();
    for h in histories {
        let Some((_, c)) = policies.get(&h.control_id) else { continue };
        let mapped: Vec<String> = c
            .control
            .frameworks
            .iter()
            .filter(|(fw, _)| framework.is_none_or(|f| f == fw.as_str()))
            .flat_map(|(fw, ids)| ids.iter().map(move |id| format!("{fw}:{id}")))
            .collect();
        if mapped.is_empty() {
            continue;
        }
        let segs = segments(h, from, to);
        out.push(summarize(&h.asset_id, h.control_id.clone(), &segs));
        for r in mapped {
            reqs.entry(h.asset_id.as_str()).or_default().entry(r).or_default().push(segs.clone());
        }
    }
    for (asset, by_req) in reqs {
        for (req, controls) in by_req {
            let cuts: BTreeSet<DateTime<Utc>> = controls.iter().flatten().flat_map(|&(a, b, _)| [a, b]).collect();
            let cuts: Vec<DateTime<Utc>> = cuts.into_iter().collect();
            let mut segs: Vec<Segment> = Vec::new();
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let at: Vec<Option<Status>> =
                    controls.iter().map(|c| c.iter().find(|&&(s, e, _)| s <= a && a < e).and_then(|&(_, _, st)| st)).collect();
                let s = combine(&at);
                match segs.last_mut() {
                    Some(last) if last.2 == s && last.1 == a => last.1 = b,
                    _ => segs.push((a, b, s)),
                }
            }
            out.push(summarize(asset, req, &segs));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn shares_and_intervals_per_control_and_requirement() {
        let p = super::super::tests::policies();
        // Period: 100 hours. Control a: pass at start, fails 10→30, errors 30→40, passes after.
        // Control b: no evidence until 20, then pass, fails 50→60.
        let hs = vec![
            History {
                asset_id: "h1".into(),
                control_id: "a".into(),
                initial: Some(Status::Pass),
                changes: vec![
                    (t(10), Status::Fail),
                    (t(20), Status::Fail),
                    (t(30), Status::Error),
                    (t(40), Status::Pass),
                    (t(70), Status::Pass),
                ],
            },
            History {
                asset_id: "h1".into(),
                control_id: "b".into(),
                initial: None,
                changes: vec![(t(20), Status::Pass), (t(50), Status::Fail), (t(60), Status::Pass)],
            },
        ];
        let e = compute(&p, &hs, Some("soc2"), t(0), t(100));
        let get = |s: &str| e.iter().find(|x| x.subject == s).unwrap();
        let a = get("a");
        assert_eq!((a.passing_seconds, a.evaluated_seconds), (70 * 3600, 100 * 3600));
        assert_eq!(
            a.not_passing,
            vec![Interval { from: t(10), to: t(30), status: Status::Fail }, Interval { from: t(30), to: t(40), status: Status::Error }]
        );
        let b = get("b");
        assert_eq!((b.no_evidence_seconds, b.pass_share), (20 * 3600, Some(70.0 / 80.0)));
        // soc2:CC6.1 (a and b): not passing 10→40 (a) and 50→60 (b).
        let r = get("soc2:CC6.1");
        assert_eq!(r.passing_seconds, 60 * 3600);
        assert_eq!(r.not_passing.iter().map(|i| (i.from, i.to)).collect::<Vec<_>>(), vec![(t(10), t(30)), (t(30), t(40)), (t(50), t(60))]);
        // soc2:CC6.6 is a alone.
        assert_eq!(get("soc2:CC6.6").passing_seconds, a.passing_seconds);
        assert!(!e.iter().any(|x| x.subject.starts_with("pci-dss")), "filtered to soc2");
    }

    #[test]
    fn evaluations_before_the_period_set_the_initial_status() {
        let h = History {
            asset_id: "h".into(),
            control_id: "a".into(),
            initial: None,
            changes: vec![(t(-5), Status::Fail), (t(5), Status::Pass)],
        };
        let s = segments(&h, t(0), t(10));
        assert_eq!(s, vec![(t(0), t(5), Some(Status::Fail)), (t(5), t(10), Some(Status::Pass))]);
    }
}
