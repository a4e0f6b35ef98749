//! Audit-ready reports for one framework over a period: an executive
//! summary (score now and at the start, with and without waivers), every
//! requirement with the checks behind it, operating effectiveness over the
//! period, gaps with due dates, a remediation plan (each failing control's
//! fix, its assets and due date, soonest and most severe first), and every
//! waiver in force during the
//! period with its justification and approver, and the head of each
//! evidence chain for the period (see [`crate::evidence`]; `verify` checks
//! it). Built from stored results
//! only ([`build`] is pure; [`gather`] reads the store), so a report for a
//! past period shows what the live view showed then. [`render`] writes it
//! as JSON, CSV, self-contained HTML or PDF, and as NIST OSCAL assessment
//! results ([`oscal`]). An offline evaluation (the
//! `evaluate` command) is exported for CI pipelines as JUnit XML
//! ([`junit`]) and, for a cluster, as Kubernetes PolicyReports
//! ([`policyreport`]).

pub mod junit;
pub mod oscal;
pub mod policyreport;
pub mod render;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::eval::Status;
use crate::policy::{PolicySet, Severity};
use crate::score::effectiveness::{self, History};
use crate::score::{self, Gap, RequirementStatus, WaiversAt};
use crate::store::evidence::ChainHead;
use crate::store::prelude::*;
use crate::store::StoreError;
use crate::waiver::{Waiver, Waivers};

/// One report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub framework: String,
    pub framework_name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub summary: Summary,
    pub requirements: Vec<Requirement>,
    pub gaps: Vec<Gap>,
    /// What to do, in the order to do it (see [`score::plan`]).
    pub remediation_plan: Vec<score::plan::Step>,
    /// Waivers in force at any time during the period that touch the
    /// framework (a waived control mapped to it, or one of its requirements).
    pub waivers: Vec<Waiver>,
    /// Per evidence chain, the links stored in the period and the last
    /// link's hash: what `driftwatch-collector verify` proves intact.
    pub evidence: Vec<ChainHead>,
}

/// The executive summary. It leads with coverage: a score is over the
/// requirements with evidence, and the rest of the catalog is not assessed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requirements in the framework's catalog (`None`: it has none).
    pub catalog_requirements: Option<usize>,
    /// Catalog requirements without evidence at the end of the period.
    pub not_assessed: Option<usize>,
    /// Share of the catalog with evidence, 0–100.
    pub coverage: Option<f64>,
    /// Of the requirements with evidence, those whose only evidence is
    /// attested (the rest have automated evidence).
    pub attested: Option<usize>,
    /// At the end of the period; waived requirements count as met.
    pub score: f64,
    pub score_without_waivers: f64,
    /// At the start of the period (`None`: no results then).
    pub score_at_start: Option<f64>,
    /// `score - score_at_start`.
    pub trend: Option<f64>,
    pub requirements: usize,
    pub passing: usize,
    pub waived: usize,
    pub partial: usize,
    pub failing: usize,
    /// Assets with a result for the framework at the end of the period.
    pub assets: usize,
    /// Results with missing evidence at the end of the period.
    pub unknown_results: usize,
    /// The oldest snapshot behind a result at the end of the period.
    pub oldest_evidence: Option<DateTime<Utc>>,
    /// Share of evaluated time the framework's requirements were met over
    /// the period, fleet-wide (operating effectiveness).
    pub effectiveness: Option<f64>,
}

/// One requirement at the end of the period.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    pub id: String,
    /// From the framework's catalog.
    pub title: Option<String>,
    /// `None`: not assessed (no applicable result, or no check maps to it).
    pub status: Option<RequirementStatus>,
    /// Share of evaluated time it was met over the period.
    pub effectiveness: Option<f64>,
    pub checks: Vec<Check>,
}

/// One check behind a requirement.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub control_id: String,
    pub title: String,
    pub severity: Severity,
    /// `check`, `detection` or `attestation`.
    pub kind: &'static str,
    /// Status → number of assets, at the end of the period (as counted for
    /// this requirement).
    pub results: BTreeMap<Status, usize>,
    /// Assets where it did not pass.
    pub not_passing: Vec<String>,
    pub oldest_evidence: Option<DateTime<Utc>>,
}

/// What a report is built from.
pub struct Inputs<'a> {
    pub policies: &'a PolicySet,
    pub waivers: &'a Waivers,
    pub framework: &'a str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Results at `from` and at `to`.
    pub at_start: Vec<score::Result>,
    pub at_end: Vec<score::Result>,
    /// Evaluation histories over [from, to].
    pub histories: Vec<History>,
    pub evidence: Vec<ChainHead>,
    /// Each gap's tracking as of `to`.
    pub gap_tracking: BTreeMap<String, score::tracking::Tracking>,
}

/// Reads what a report needs from the store.
pub async fn gather<'a>(
    store: &SharedStore,
    policies: &'a PolicySet,
    waivers: &'a Waivers,
    framework: &'a str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Inputs<'a>, StoreError> {
    Ok(Inputs {
        policies,
        waivers,
        framework,
        from,
        to,
        at_start: store.results_at(from).await?,
        at_end: store.results_at(to).await?,
        histories: store.histories(from, to).await?,
        evidence: store.evidence_heads(None, from, to).await?,
        gap_tracking: {
            let until = crate::store::secs(&to);
            let events: Vec<_> = store.gap_events().await?.into_iter().filter(|e| e.changed_at <= until).collect();
            score::tracking::latest(&events)
        },
    })
}

/// Builds the report. `framework` must be known (see
/// [`crate::policy::frameworks`]).
pub fn build(i: &Inputs, generated_at: DateTime<Utc>) -> Report {
    let fw = i.framework;
    let end = WaiversAt { waivers: i.waivers, at: i.to };
    let fleet = |results: &[score::Result], at: DateTime<Utc>| {
        score::scores(i.policies, results, Some(fw), &score::GroupBy::Fleet, WaiversAt { waivers: i.waivers, at }).into_iter().next()
    };
    let now = fleet(&i.at_end, i.to);
    let start = fleet(&i.at_start, i.from);

    // Effectiveness: per requirement, time met over time evaluated, summed
    // over assets.
    let mut eff: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in effectiveness::compute(i.policies, &i.histories, Some(fw), i.from, i.to) {
        if let Some(req) = e.subject.strip_prefix(&format!("{fw}:")) {
            let x = eff.entry(req.to_string()).or_default();
            x.0 += e.passing_seconds;
            x.1 += e.evaluated_seconds;
        }
    }
    let share = |(p, e): (i64, i64)| (e > 0).then(|| p as f64 / e as f64);

    let counted = score::requirements(i.policies, &i.at_end, fw, end);
    // Every requirement of the catalog, in its order, then every other one
    // some check maps to, with or without results: none is silently left
    // out.
    let catalog = i.policies.catalogs.get(fw);
    let requirements = i
        .policies
        .requirement_ids(fw)
        .into_iter()
        .map(|id| {
            let (status, rs) = match counted.get(&id) {
                Some((s, rs)) => (Some(*s), rs.as_slice()),
                None => (None, &[][..]),
            };
            let mut checks: BTreeMap<String, Check> = BTreeMap::new();
            for c in i.policies.controls.iter().filter(|c| c.control.frameworks.get(fw).is_some_and(|r| r.contains(&id))) {
                checks.insert(
                    c.control.id.clone(),
                    Check {
                        control_id: c.control.id.clone(),
                        title: c.control.title.clone(),
                        severity: c.control.severity,
                        kind: c.kind(),
                        results: BTreeMap::new(),
                        not_passing: Vec::new(),
                        oldest_evidence: None,
                    },
                );
            }
            for (r, s) in rs {
                let Some(check) = checks.get_mut(&r.control_id) else { continue };
                *check.results.entry(*s).or_default() += 1;
                if *s != Status::Pass {
                    check.not_passing.push(r.asset_id.clone());
                }
                if let Some(e) = r.evidence_at {
                    check.oldest_evidence = Some(check.oldest_evidence.map_or(e, |o| o.min(e)));
                }
            }
            Requirement {
                title: catalog.and_then(|c| c.requirement(&id)).map(|r| r.title.clone()),
                effectiveness: eff.get(&id).copied().and_then(share),
                id,
                status,
                checks: checks.into_values().collect(),
            }
        })
        .collect();

    let in_framework: Vec<&score::Result> =
        i.at_end.iter().filter(|r| i.policies.get(&r.control_id).is_some_and(|(_, c)| c.control.frameworks.contains_key(fw))).collect();
    let total = eff.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let catalog_size = catalog.map(|c| c.requirements.len());
    let summary = Summary {
        catalog_requirements: catalog_size,
        // No result at all: nothing of the catalog is assessed.
        not_assessed: now.as_ref().and_then(|s| s.not_assessed).or(catalog_size),
        coverage: now.as_ref().and_then(|s| s.coverage).or(catalog_size.map(|_| 0.0)),
        attested: now.as_ref().and_then(|s| s.attested).or(catalog_size.map(|_| 0)),
        score: now.as_ref().map_or(100.0, |s| s.score),
        score_without_waivers: now.as_ref().map_or(100.0, |s| s.score_without_waivers),
        score_at_start: start.as_ref().map(|s| s.score),
        trend: match (&now, &start) {
            (Some(n), Some(s)) => Some(((n.score - s.score) * 100.0).round() / 100.0),
            _ => None,
        },
        requirements: now.as_ref().map_or(0, |s| s.applicable),
        passing: now.as_ref().map_or(0, |s| s.passing),
        waived: now.as_ref().map_or(0, |s| s.waived),
        partial: now.as_ref().map_or(0, |s| s.partial),
        failing: now.as_ref().map_or(0, |s| s.failing),
        assets: in_framework.iter().map(|r| r.asset_id.as_str()).collect::<BTreeSet<_>>().len(),
        unknown_results: in_framework.iter().filter(|r| r.status == Status::Unknown).count(),
        oldest_evidence: in_framework.iter().filter_map(|r| r.evidence_at).min(),
        effectiveness: share(total),
    };

    let touches = |w: &Waiver| match (&w.spec.control, w.requirement()) {
        (Some(c), _) => i.policies.get(c).is_some_and(|(_, c)| c.control.frameworks.contains_key(fw)),
        (None, Some((f, _))) => f == fw,
        _ => false,
    };
    let waivers = i.waivers.list.iter().filter(|w| w.in_force_during(i.from, i.to) && touches(w)).cloned().collect();

    Report {
        framework: fw.to_string(),
        framework_name: crate::policy::frameworks::framework(fw).map(|(f, _)| f.name.to_string()).unwrap_or_else(|| fw.to_string()),
        from: i.from,
        to: i.to,
        generated_at,
        summary,
        requirements,
        gaps: score::GapFilter::default().gaps(i.policies, &i.at_end, Some(fw), end, i.to, &i.gap_tracking),
        remediation_plan: score::plan::plan(i.policies, &i.at_end, Some(fw), end, i.to),
        waivers,
        evidence: i.evidence.clone(),
    }
}

/// An evaluation of control `id` of `p` on asset `web-1`, for the export
/// formats' tests.
#[cfg(test)]
pub(crate) fn evaluation(
    p: &PolicySet,
    id: &str,
    status: Status,
    evidence: impl IntoIterator<Item = (&'static str, driftwatch_schemas::FactValue)>,
) -> crate::eval::Evaluation {
    let (_, c) = p.get(id).expect("a control of the test pack");
    crate::eval::Evaluation {
        asset_id: "web-1".into(),
        control_id: id.into(),
        title: c.control.title.clone(),
        severity: c.control.severity,
        status,
        frameworks: c.frameworks.clone(),
        evidence: evidence.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        message: None,
        evaluated_at: Utc::now(),
        snapshot_id: "s".into(),
        sequence: 1,
        checked: Some(status),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::score::tests::{policies, r};

    /// A report over the test pack: CC6.1 partial, CC6.6 met, CC7.2
    /// failing; the rest of SOC 2 not assessed.
    pub(crate) fn report() -> Report {
        let p = policies();
        let waivers = Waivers::default();
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 6, 1, 0, 0, 0).unwrap();
        let inputs = Inputs {
            policies: &p,
            waivers: &waivers,
            framework: "soc2",
            from: now - chrono::Duration::days(7),
            to: now,
            at_start: vec![],
            at_end: vec![
                r("h1", "web", "a", Status::Pass, 1),
                r("h1", "web", "b", Status::Fail, 1),
                r("h2", "db", "a", Status::Pass, 1),
                r("h2", "db", "c", Status::Fail, 1),
            ],
            histories: vec![],
            evidence: vec![ChainHead { chain_id: "c1".into(), links: 3, first_seq: 1, last_seq: 3, head: "ab".repeat(32), last_at: 0 }],
            gap_tracking: Default::default(),
        };
        build(&inputs, now)
    }

    #[test]
    fn a_report_lists_requirements_checks_waivers_and_the_trend() {
        let p = policies();
        let now = Utc::now();
        let wtext = format!(
            "waivers:\n  - id: w-b\n    control: b\n    scope: {{assets: [h1]}}\n    justification: compensating control\n    approver: ciso\n    risk: medium\n    starts: {}\n    expires: {}\n  - id: w-other\n    requirement: pci-dss:8.3.1\n    scope: {{fleet: true}}\n    justification: j\n    approver: a\n    risk: low\n    expires: {}\n",
            (now - chrono::Duration::days(3)).to_rfc3339(),
            (now + chrono::Duration::days(3)).to_rfc3339(),
            (now + chrono::Duration::days(3)).to_rfc3339(),
        );
        let waivers = Waivers::new(crate::waiver::load_text(std::path::Path::new("w.yaml"), &wtext).unwrap());
        let inputs = Inputs {
            policies: &p,
            waivers: &waivers,
            framework: "soc2",
            from: now - chrono::Duration::days(7),
            to: now,
            at_start: vec![r("h1", "web", "a", Status::Fail, 9), r("h1", "web", "b", Status::Fail, 9)],
            at_end: vec![
                r("h1", "web", "a", Status::Pass, 1),
                r("h1", "web", "b", Status::Waived, 1),
                r("h1", "web", "c", Status::Unknown, 1),
            ],
            histories: vec![],
            evidence: vec![],
            gap_tracking: Default::default(),
        };
        let rep = build(&inputs, now);
        // CC6.1: a pass + b waived → waived; CC6.6: a pass; CC7.2: c unknown → fail.
        assert_eq!((rep.summary.passing, rep.summary.waived, rep.summary.failing), (1, 1, 1));
        assert_eq!(rep.summary.score, 66.67);
        assert_eq!(rep.summary.score_without_waivers, 50.0, "CC6.1 partial without the waiver");
        assert_eq!((rep.summary.score_at_start, rep.summary.trend), (Some(0.0), Some(66.67)));
        assert_eq!(rep.summary.unknown_results, 1);
        // Every criterion of the catalog is listed; those without results
        // are not assessed, and coverage says how many.
        assert_eq!(rep.requirements.len(), 61);
        let assessed: Vec<&str> = rep.requirements.iter().filter(|r| r.status.is_some()).map(|r| r.id.as_str()).collect();
        assert_eq!(assessed, vec!["CC6.1", "CC6.6", "CC7.2"]);
        let cc11 = rep.requirements.iter().find(|r| r.id == "CC1.1").unwrap();
        assert!(cc11.status.is_none() && cc11.checks.is_empty() && cc11.title.is_some());
        assert_eq!((rep.summary.catalog_requirements, rep.summary.not_assessed, rep.summary.coverage), (Some(61), Some(58), Some(4.92)));
        let html = String::from_utf8(render::render(&rep, render::Format::Html)).unwrap();
        assert!(html.contains("Coverage 4.9%: 3 of the 61 requirements of SOC 2 (2017 TSC) have evidence (3 automated, 0 attested only); 58 are not assessed"), "{html}");
        assert!(!html.to_lowercase().contains("compliant"), "no framework is called compliant below full coverage");
        let csv = String::from_utf8(render::render(&rep, render::Format::Csv)).unwrap();
        assert!(csv.lines().any(|l| l.starts_with("soc2,CC1.1,not assessed")), "{csv}");
        let cc61 = rep.requirements.iter().find(|r| r.id == "CC6.1").unwrap();
        assert_eq!(cc61.status, Some(RequirementStatus::Waived));
        assert_eq!(cc61.checks.iter().map(|c| c.control_id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(cc61.checks[1].not_passing, vec!["h1"]);
        // Only waivers that touch soc2: w-b (control b maps to soc2); w-other is pci-dss.
        assert_eq!(rep.waivers.iter().map(|w| w.id()).collect::<Vec<_>>(), vec!["w-b"]);
        assert_eq!(rep.gaps.iter().map(|g| g.requirement.as_str()).collect::<Vec<_>>(), vec!["CC7.2"]);
        // The plan: c's evidence on h1 (b is waived, a passes).
        assert_eq!(rep.remediation_plan.iter().map(|s| s.fix.control_id.as_str()).collect::<Vec<_>>(), vec!["c"]);
        assert_eq!(
            (rep.remediation_plan[0].assets.as_slice(), rep.remediation_plan[0].requirements.as_slice()),
            (&["h1".to_string()][..], &["soc2:CC7.2".to_string()][..])
        );
        assert!(html.contains("<h2>Remediation plan</h2>") && html.contains("<b>c</b>"), "{html}");
    }
}
