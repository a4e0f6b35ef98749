//! What to do about the gaps: each failing control's remediation and
//! rationale ([`Fix`], carried by every [`super::Gap`]), and the
//! remediation plan ([`plan`]): one step per control that does not pass
//! somewhere, with the assets, the requirements it holds back and the date
//! it is due, ordered as the work should be done — due date first, then
//! severity. Results waived (by their control's waiver or their
//! requirement's) are not work to do.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{remediation_days, tally, GroupBy, Result, WaiversAt};
use crate::eval::Status;
use crate::policy::{Control, PolicySet, Severity};

/// A control's guidance, from its pack.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fix {
    pub control_id: String,
    pub title: String,
    pub severity: Severity,
    pub rationale: String,
    pub remediation: String,
}

impl Fix {
    pub fn of(c: &Control) -> Fix {
        Fix {
            control_id: c.id.clone(),
            title: c.title.clone(),
            severity: c.severity,
            rationale: c.rationale.clone(),
            remediation: c.remediation.clone(),
        }
    }
}

/// One step of a remediation plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    #[serde(flatten)]
    pub fix: Fix,
    /// `framework:requirement`s it keeps from being met.
    pub requirements: Vec<String>,
    /// Assets where it does not pass (and is not waived).
    pub assets: Vec<String>,
    /// When the earliest of those results started failing.
    pub first_seen: DateTime<Utc>,
    /// `first_seen` plus the remediation time of its severity.
    pub due: DateTime<Utc>,
    pub overdue: bool,
}

/// The remediation plan over `results` for one framework (or all): the
/// steps due soonest first, the most severe first among those due together.
pub fn plan(policies: &PolicySet, results: &[Result], framework: Option<&str>, w: WaiversAt, now: DateTime<Utc>) -> Vec<Step> {
    struct Work<'a> {
        requirements: BTreeSet<String>,
        assets: BTreeSet<&'a str>,
        first_seen: DateTime<Utc>,
    }
    let mut work: BTreeMap<&str, Work> = BTreeMap::new();
    for ((fw, _), reqs) in tally(policies, results, framework, &GroupBy::Fleet, w) {
        for (req, counted) in reqs {
            for (r, s) in counted {
                if matches!(s, Status::Pass | Status::Waived) {
                    continue;
                }
                let wk = work.entry(r.control_id.as_str()).or_insert_with(|| Work {
                    requirements: BTreeSet::new(),
                    assets: BTreeSet::new(),
                    first_seen: r.since,
                });
                wk.requirements.insert(format!("{fw}:{req}"));
                wk.assets.insert(&r.asset_id);
                wk.first_seen = wk.first_seen.min(r.since);
            }
        }
    }
    let mut steps: Vec<Step> = work
        .into_iter()
        .filter_map(|(id, wk)| {
            let (_, c) = policies.get(id)?;
            let due = wk.first_seen + Duration::days(remediation_days(c.control.severity));
            Some(Step {
                fix: Fix::of(&c.control),
                requirements: wk.requirements.into_iter().collect(),
                assets: wk.assets.into_iter().map(String::from).collect(),
                first_seen: wk.first_seen,
                due,
                overdue: due < now,
            })
        })
        .collect();
    steps.sort_by(|a, b| a.due.cmp(&b.due).then(b.fix.severity.cmp(&a.fix.severity)).then(a.fix.control_id.cmp(&b.fix.control_id)));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::tests::{none, policies, r};

    #[test]
    fn steps_are_due_first_then_most_severe_and_skip_what_passes() {
        let p = policies();
        let rs = vec![
            r("h1", "web", "a", Status::Fail, 40), // high: 30 days, overdue
            r("h2", "web", "a", Status::Fail, 2),
            r("h1", "web", "b", Status::Fail, 1),  // critical: 7 days
            r("h1", "web", "c", Status::Fail, 85), // low: 90 days
            r("h3", "db", "c", Status::Pass, 1),
        ];
        let now = Utc::now();
        let steps = plan(&p, &rs, None, none(), now);
        let order: Vec<&str> = steps.iter().map(|s| s.fix.control_id.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"], "by due date: a (40 d ago + 30), c (85 + 90), b (1 + 7)");
        assert!(steps[0].overdue && !steps[2].overdue);
        assert_eq!(steps[0].assets, ["h1", "h2"]);
        assert_eq!(steps[0].requirements, ["pci-dss:2.2.6", "soc2:CC6.1", "soc2:CC6.6"]);
        assert_eq!(steps[1].assets, ["h1"], "c passes on h3");
        let soc2 = plan(&p, &rs, Some("pci-dss"), none(), now);
        assert_eq!(soc2.iter().map(|s| s.fix.control_id.as_str()).collect::<Vec<_>>(), ["a", "b"], "c maps to no pci-dss requirement");
    }

    #[test]
    fn the_same_due_date_puts_the_most_severe_first() {
        let p = policies();
        let since = Utc::now() - Duration::days(3);
        let mut rs = vec![r("h1", "web", "c", Status::Fail, 0), r("h1", "web", "b", Status::Fail, 0)];
        // Both due at the same instant: b (critical, 7 d) and c (low, 90 d) shifted to match.
        rs[0].since = since - Duration::days(83);
        rs[1].since = since;
        let steps = plan(&p, &rs, None, none(), Utc::now());
        assert_eq!(steps[0].due, steps[1].due);
        assert_eq!(steps[0].fix.control_id, "b");
    }
}
