//! Scores, gaps and operating effectiveness: what the posture means per
//! framework requirement. Pure functions over results; the store supplies
//! them (latest posture, evaluation history) and the CLI and API print them.
//!
//! A requirement's status within a scope (an asset, a label group, the
//! fleet) comes from every applicable result of every check mapped to it:
//! all pass → `pass`; all pass or waived → `waived`; some pass → `partial`;
//! none → `fail`. Errors and `unknown` (missing evidence) count as not
//! passing; `not_applicable` results are left out, and a requirement with
//! no applicable result is left out of the score:
//! score = (pass + waived + 0.5 × partial) / applicable × 100, and
//! `score_without_waivers` the same with every waived result failing.
//! A result is waived by its control's waiver (stored as `waived`) or by a
//! waiver of the requirement in force at the instant scored.
//!
//! Every score says what it covers: of the requirements in the framework's
//! catalog ([`crate::policy::catalog`]), how many have evidence in the
//! scope (`applicable`) and how many have none (`not_assessed`), and
//! `coverage` = the share with evidence. A score of 100 with a coverage
//! below 100 says that what was assessed is met, not that the framework
//! is.

pub mod effectiveness;
pub mod plan;
pub mod posture;
pub mod tracking;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::eval::Status;
use crate::policy::{PolicySet, Severity};
use crate::waiver::Waivers;

pub use crate::store::views::{ControlResult as Result, SharedLabels};

/// How results are grouped into scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Fleet,
    Asset,
    /// By the value of a label; assets without it form the group `(none)`.
    Label(String),
    /// By the top-level group of the framework's catalog each requirement
    /// sits under: a SOC 2 trust services category, a CSF function, an ISO
    /// theme, a CMMC family, a HIPAA section. Requirements of a framework
    /// without a catalog form the group `(no catalog)`.
    Section,
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fleet" => Ok(GroupBy::Fleet),
            "asset" => Ok(GroupBy::Asset),
            "section" => Ok(GroupBy::Section),
            _ => match s.strip_prefix("label:") {
                Some(k) if !k.is_empty() => Ok(GroupBy::Label(k.to_string())),
                _ => Err(format!("{s:?}: expected fleet, asset, section or label:KEY")),
            },
        }
    }
}

impl GroupBy {
    /// The group of result `r` as it counts for `framework`'s requirement
    /// `id`.
    fn group_of(&self, r: &Result, policies: &PolicySet, framework: &str, id: &str) -> String {
        match self {
            GroupBy::Fleet => "fleet".into(),
            GroupBy::Asset => r.asset_id.clone(),
            GroupBy::Label(k) => r.labels.get(k).cloned().unwrap_or_else(|| "(none)".into()),
            GroupBy::Section => section_of(policies, framework, id).unwrap_or_else(|| NO_CATALOG.into()),
        }
    }
}

/// The group of requirements of a framework without a catalog.
const NO_CATALOG: &str = "(no catalog)";

/// The id of the catalog's top-level group `id` sits under.
fn section_of(policies: &PolicySet, framework: &str, id: &str) -> Option<String> {
    policies.catalogs.get(framework)?.root_group(id).map(|g| g.id.clone())
}

/// A requirement's status within a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequirementStatus {
    Pass,
    /// Met only thanks to waivers.
    Waived,
    Partial,
    Fail,
}

/// The score of one framework in one scope.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub framework: String,
    pub group: String,
    pub applicable: usize,
    pub passing: usize,
    pub partial: usize,
    pub failing: usize,
    /// Requirements met only thanks to waivers.
    pub waived: usize,
    /// 0–100, waived requirements counted as met.
    pub score: f64,
    /// 0–100, waived results counted as failing.
    pub score_without_waivers: f64,
    /// 0–100, each requirement weighted by the highest severity of the
    /// controls behind it (low 1, medium 2, high 3, critical 4): shown
    /// beside the score, never instead of it.
    pub score_weighted: f64,
    /// Requirements in the framework's catalog (`None`: it has none).
    pub catalog_requirements: Option<usize>,
    /// Catalog requirements with no applicable result in the scope: no
    /// evidence either way.
    pub not_assessed: Option<usize>,
    /// Share of the catalog's requirements with evidence, 0–100.
    pub coverage: Option<f64>,
    /// Catalog requirements whose only evidence is attested (the others
    /// with evidence have automated evidence, from checks or detections).
    pub attested: Option<usize>,
}

/// What a score covers of `framework`'s catalog (of one of its sections
/// only, with `section`), given each requirement with evidence and the
/// results behind it.
fn coverage(policies: &PolicySet, framework: &str, section: Option<&str>, assessed: &BTreeMap<String, Vec<Counted>>) -> Coverage {
    let Some(catalog) = policies.catalogs.get(framework) else { return Coverage::default() };
    let in_scope = |id: &str| section.is_none_or(|s| catalog.root_group(id).is_some_and(|g| g.id == s));
    let total = catalog.requirements.iter().filter(|r| in_scope(&r.id)).count();
    let with_evidence: Vec<&Vec<Counted>> =
        assessed.iter().filter(|(id, _)| catalog.contains(id) && in_scope(id)).map(|(_, rs)| rs).collect();
    let attested = with_evidence
        .iter()
        .filter(|rs| rs.iter().all(|(r, _)| policies.get(&r.control_id).is_some_and(|(_, c)| c.attest.is_some())))
        .count();
    Coverage {
        catalog_requirements: Some(total),
        not_assessed: Some(total - with_evidence.len()),
        coverage: Some(percent(with_evidence.len() as f64, total)),
        attested: Some(attested),
    }
}

/// A score's [`coverage`] (all `None` without a catalog).
#[derive(Default)]
struct Coverage {
    catalog_requirements: Option<usize>,
    not_assessed: Option<usize>,
    coverage: Option<f64>,
    attested: Option<usize>,
}

/// The waivers to apply, and the instant they must be in force at.
#[derive(Clone, Copy)]
pub struct WaiversAt<'a> {
    pub waivers: &'a Waivers,
    pub at: DateTime<Utc>,
}

/// One result as it counts for one requirement (waived by a requirement
/// waiver, or as stored).
pub type Counted<'a> = (&'a Result, Status);

/// Each requirement's mapped results, per framework and group.
type Tally<'a> = BTreeMap<(String, String), BTreeMap<String, Vec<Counted<'a>>>>;

fn tally<'a>(policies: &PolicySet, results: &'a [Result], framework: Option<&str>, by: &GroupBy, w: WaiversAt) -> Tally<'a> {
    let mut t: Tally<'a> = BTreeMap::new();
    for r in results {
        if r.status == Status::NotApplicable {
            continue;
        }
        let Some((_, c)) = policies.get(&r.control_id) else { continue };
        for (fw, ids) in &c.control.frameworks {
            if framework.is_some_and(|f| f != fw) {
                continue;
            }
            for id in ids {
                let waived = !matches!(r.status, Status::Pass | Status::Waived)
                    && w.waivers.for_requirement(fw, id, &r.asset_id, &r.labels, w.at).is_some();
                let reqs = t.entry((fw.clone(), by.group_of(r, policies, fw, id))).or_default();
                reqs.entry(id.clone()).or_default().push((r, if waived { Status::Waived } else { r.status }));
            }
        }
    }
    t
}

fn requirement_status(results: &[Counted], honour_waivers: bool) -> RequirementStatus {
    let passing = results.iter().filter(|(_, s)| *s == Status::Pass).count();
    let waived = if honour_waivers { results.iter().filter(|(_, s)| *s == Status::Waived).count() } else { 0 };
    if passing == results.len() {
        RequirementStatus::Pass
    } else if passing + waived == results.len() {
        RequirementStatus::Waived
    } else if passing + waived > 0 {
        RequirementStatus::Partial
    } else {
        RequirementStatus::Fail
    }
}

/// What a requirement's status counts for in a score.
fn met(s: RequirementStatus) -> f64 {
    match s {
        RequirementStatus::Pass | RequirementStatus::Waived => 1.0,
        RequirementStatus::Partial => 0.5,
        RequirementStatus::Fail => 0.0,
    }
}

/// A requirement's weight in `score_weighted`: the highest severity of
/// the controls behind it.
fn severity_weight(s: Option<Severity>) -> f64 {
    match s {
        Some(Severity::Critical) => 4.0,
        Some(Severity::High) => 3.0,
        Some(Severity::Medium) => 2.0,
        _ => 1.0,
    }
}

fn percent(met: f64, applicable: usize) -> f64 {
    let score = if applicable == 0 { 100.0 } else { met / applicable as f64 * 100.0 };
    (score * 100.0).round() / 100.0
}

/// Scores per framework (or only `framework`) and group.
pub fn scores(policies: &PolicySet, results: &[Result], framework: Option<&str>, by: &GroupBy, w: WaiversAt) -> Vec<Score> {
    tally(policies, results, framework, by, w)
        .into_iter()
        .map(|((fw, group), reqs)| {
            let (mut passing, mut partial, mut failing, mut waived) = (0, 0, 0, 0);
            let mut met_without = 0.0;
            let (mut weighted_met, mut weights) = (0.0, 0.0);
            for rs in reqs.values() {
                let status = requirement_status(rs, true);
                match status {
                    RequirementStatus::Pass => passing += 1,
                    RequirementStatus::Waived => waived += 1,
                    RequirementStatus::Partial => partial += 1,
                    RequirementStatus::Fail => failing += 1,
                }
                let weight =
                    severity_weight(rs.iter().filter_map(|(r, _)| policies.get(&r.control_id)).map(|(_, c)| c.control.severity).max());
                weights += weight;
                weighted_met += weight * met(status);
                met_without += met(requirement_status(rs, false));
            }
            let applicable = reqs.len();
            let section = (*by == GroupBy::Section).then_some(group.as_str());
            let Coverage { catalog_requirements, not_assessed, coverage, attested } = coverage(policies, &fw, section, &reqs);
            Score {
                catalog_requirements,
                not_assessed,
                coverage,
                attested,
                framework: fw,
                group,
                applicable,
                passing,
                partial,
                failing,
                waived,
                score: percent(passing as f64 + waived as f64 + 0.5 * partial as f64, applicable),
                score_without_waivers: percent(met_without, applicable),
                score_weighted: if weights == 0.0 { 100.0 } else { (weighted_met / weights * 10_000.0).round() / 100.0 },
            }
        })
        .collect()
}

/// Every requirement of `framework` (fleet-wide) with its status and the
/// results behind it, as counted (a requirement waiver shows as `waived`).
pub fn requirements<'a>(
    policies: &PolicySet,
    results: &'a [Result],
    framework: &str,
    w: WaiversAt,
) -> BTreeMap<String, (RequirementStatus, Vec<Counted<'a>>)> {
    tally(policies, results, Some(framework), &GroupBy::Fleet, w)
        .into_values()
        .flatten()
        .map(|(req, rs)| (req, (requirement_status(&rs, true), rs)))
        .collect()
}

/// A requirement not (fully) met.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Gap {
    /// `<framework>:<requirement>`: stable, what tracking refers to.
    pub id: String,
    pub framework: String,
    pub requirement: String,
    pub status: RequirementStatus,
    /// The highest severity among the failing checks.
    pub severity: Severity,
    /// `owner` (or else `team`) labels of the failing assets.
    pub owners: Vec<String>,
    pub failing_controls: Vec<String>,
    pub failing_assets: usize,
    /// When the earliest of the failing results started failing.
    pub first_seen: DateTime<Utc>,
    /// `first_seen` plus the remediation time of its severity.
    pub due: DateTime<Utc>,
    pub overdue: bool,
    /// What to do: each failing control's remediation and rationale.
    pub fixes: Vec<plan::Fix>,
    /// Its tracking ([`tracking::track`]): state and assignee.
    pub state: tracking::GapState,
    pub assignee: Option<String>,
    /// Recorded resolved (or risk accepted) but failing again.
    pub reopened: bool,
}

/// Days to remediate a gap of each severity.
pub fn remediation_days(s: Severity) -> i64 {
    match s {
        Severity::Critical => 7,
        Severity::High => 30,
        Severity::Medium => 60,
        Severity::Low => 90,
    }
}

/// Every failing or partial requirement fleet-wide, most urgent first
/// (a requirement met thanks to waivers is not a gap).
pub fn gaps(policies: &PolicySet, results: &[Result], framework: Option<&str>, w: WaiversAt, now: DateTime<Utc>) -> Vec<Gap> {
    let mut out = Vec::new();
    for ((fw, _), reqs) in tally(policies, results, framework, &GroupBy::Fleet, w) {
        for (req, rs) in reqs {
            let status = requirement_status(&rs, true);
            if matches!(status, RequirementStatus::Pass | RequirementStatus::Waived) {
                continue;
            }
            let failing: Vec<&Result> = rs.iter().filter(|(_, s)| !matches!(s, Status::Pass | Status::Waived)).map(|(r, _)| *r).collect();
            let severity =
                failing.iter().filter_map(|r| policies.get(&r.control_id)).map(|(_, c)| c.control.severity).max().unwrap_or(Severity::Low);
            let first_seen = failing.iter().map(|r| r.since).min().unwrap_or(now);
            let due = first_seen + Duration::days(remediation_days(severity));
            let owners: BTreeSet<String> = failing.iter().filter_map(|r| owner_of(r).cloned()).collect();
            let controls: BTreeSet<String> = failing.iter().map(|r| r.control_id.clone()).collect();
            let fixes = controls.iter().filter_map(|id| policies.get(id)).map(|(_, c)| plan::Fix::of(&c.control)).collect();
            let assets: BTreeSet<&str> = failing.iter().map(|r| r.asset_id.as_str()).collect();
            out.push(Gap {
                id: tracking::gap_id(&fw, &req),
                state: tracking::GapState::Open,
                assignee: None,
                reopened: false,
                framework: fw.clone(),
                requirement: req,
                status,
                severity,
                owners: owners.into_iter().collect(),
                failing_controls: controls.into_iter().collect(),
                failing_assets: assets.len(),
                first_seen,
                due,
                overdue: due < now,
                fixes,
            });
        }
    }
    out.sort_by(|a, b| {
        a.due.cmp(&b.due).then(b.severity.cmp(&a.severity)).then(a.framework.cmp(&b.framework)).then(a.requirement.cmp(&b.requirement))
    });
    out
}

/// Who owns a result's asset: its `owner` label, else its `team`.
fn owner_of(r: &Result) -> Option<&String> {
    r.labels.get("owner").or_else(|| r.labels.get("team"))
}

/// Which gaps to list (every field optional): those of one asset's results
/// or of one owner's assets (its `owner` label, else `team`), at or above
/// a severity.
#[derive(Debug, Default, Clone, Copy)]
pub struct GapFilter<'a> {
    pub asset: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub min_severity: Option<Severity>,
    /// Only gaps in this tracking state, or assigned to this person.
    pub state: Option<tracking::GapState>,
    pub assignee: Option<&'a str>,
}

impl GapFilter<'_> {
    /// The gaps of the results this filter keeps (a requirement's due date
    /// is then its own on those assets), with their `tracking`.
    pub fn gaps(
        &self,
        policies: &PolicySet,
        results: &[Result],
        framework: Option<&str>,
        w: WaiversAt,
        now: DateTime<Utc>,
        tracked: &BTreeMap<String, tracking::Tracking>,
    ) -> Vec<Gap> {
        let mut out = if self.asset.is_none() && self.owner.is_none() {
            gaps(policies, results, framework, w, now)
        } else {
            let kept: Vec<Result> = results
                .iter()
                .filter(|r| self.asset.is_none_or(|a| r.asset_id == a))
                .filter(|r| self.owner.is_none_or(|o| owner_of(r).is_some_and(|x| x == o)))
                .cloned()
                .collect();
            gaps(policies, &kept, framework, w, now)
        };
        tracking::track(&mut out, tracked);
        out.retain(|g| {
            self.min_severity.is_none_or(|min| g.severity >= min)
                && self.state.is_none_or(|s| g.state == s)
                && self.assignee.is_none_or(|a| g.assignee.as_deref() == Some(a))
        });
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) fn policies() -> PolicySet {
        let text = r#"pack: t
controls:
  - {id: a, title: a, severity: high, check: 'x.a', frameworks: {soc2: [CC6.1, CC6.6], pci-dss: ["2.2.6"]}}
  - {id: b, title: b, severity: critical, check: 'x.b', frameworks: {soc2: [CC6.1], pci-dss: ["8.3.1"]}}
  - {id: c, title: c, severity: low, check: 'x.c', frameworks: {soc2: [CC7.2]}}
"#;
        PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), text).unwrap())
    }

    #[test]
    fn coverage_says_which_requirements_only_attestations_give_evidence_for() {
        let text = r#"pack: t
controls:
  - {id: a, title: a, severity: high, check: 'x.a', frameworks: {soc2: [CC6.1]}}
  - {id: org.review, title: r, severity: high, attest: {owner: sec, cadence: 90d, evidence: e}, frameworks: {soc2: [CC6.1, CC6.2, CC1.1]}}
"#;
        let p = PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), text).unwrap());
        let rs = vec![r("h1", "web", "a", Status::Pass, 1), r(crate::policy::ORGANIZATION, "", "org.review", Status::Pass, 1)];
        let fleet = scores(&p, &rs, Some("soc2"), &GroupBy::Fleet, none());
        // CC6.1 has automated evidence too; CC6.2 and CC1.1 only attested.
        assert_eq!((fleet[0].applicable, fleet[0].attested, fleet[0].not_assessed), (3, Some(2), Some(58)));
        let sections = scores(&p, &rs, Some("soc2"), &GroupBy::Section, none());
        assert_eq!(sections.iter().filter_map(|s| s.attested).sum::<usize>(), 2, "{sections:#?}");
    }

    /// No waivers.
    pub(crate) fn none() -> WaiversAt<'static> {
        static NONE: std::sync::OnceLock<Waivers> = std::sync::OnceLock::new();
        WaiversAt { waivers: NONE.get_or_init(Waivers::default), at: Utc::now() }
    }

    pub(crate) fn r(asset: &str, team: &str, control: &str, status: Status, days_ago: i64) -> Result {
        Result {
            asset_id: asset.into(),
            labels: std::sync::Arc::new([("team".to_string(), team.to_string())].into()),
            control_id: control.into(),
            status,
            since: Utc::now() - Duration::days(days_ago),
            evidence_at: None,
        }
    }

    #[test]
    fn requirements_pass_partially_or_fail_and_score_by_the_formula() {
        let p = policies();
        let rs = vec![
            r("h1", "web", "a", Status::Pass, 1),
            r("h1", "web", "b", Status::Fail, 3),
            r("h1", "web", "c", Status::NotApplicable, 1),
            r("h2", "db", "a", Status::Pass, 1),
            r("h2", "db", "b", Status::Pass, 1),
            r("h2", "db", "c", Status::Error, 1),
        ];
        let fleet = scores(&p, &rs, Some("soc2"), &GroupBy::Fleet, none());
        // CC6.1: a,a,b pass and b fails → partial; CC6.6: pass; CC7.2: error only → fail.
        assert_eq!(
            fleet,
            vec![Score {
                framework: "soc2".into(),
                group: "fleet".into(),
                applicable: 3,
                passing: 1,
                partial: 1,
                failing: 1,
                waived: 0,
                score: 50.0,
                score_without_waivers: 50.0,
                // CC6.1 (partial, critical b: 4 × 0.5) + CC6.6 (pass, high
                // a: 3) + CC7.2 (fail, low: 0) over 4 + 3 + 1.
                score_weighted: 62.5,
                // Three of SOC 2's 61 criteria have evidence.
                catalog_requirements: Some(61),
                not_assessed: Some(58),
                coverage: Some(4.92),
                attested: Some(0),
            }]
        );
        let by_team = scores(&p, &rs, Some("pci-dss"), &GroupBy::Label("team".into()), none());
        assert_eq!(by_team.iter().map(|s| (s.group.as_str(), s.score)).collect::<Vec<_>>(), vec![("db", 100.0), ("web", 50.0)]);
        let by_asset = scores(&p, &rs, None, &GroupBy::Asset, none());
        assert_eq!(by_asset.len(), 4, "two frameworks × two assets");
        let h1_soc2 = by_asset.iter().find(|s| s.group == "h1" && s.framework == "soc2").unwrap();
        // h1: CC6.1 partial, CC6.6 pass (c is not applicable, so CC7.2 is out).
        assert_eq!((h1_soc2.applicable, h1_soc2.score), (2, 75.0));
    }

    #[test]
    fn sections_score_the_catalog_groups_with_their_own_coverage() {
        let p = policies();
        let rs = vec![r("h1", "web", "a", Status::Pass, 1), r("h1", "web", "b", Status::Fail, 3), r("h1", "web", "c", Status::Pass, 1)];
        let by_section = scores(&p, &rs, None, &GroupBy::Section, none());
        let soc2: Vec<(&str, f64, Option<usize>, Option<f64>)> = by_section
            .iter()
            .filter(|s| s.framework == "soc2")
            .map(|s| (s.group.as_str(), s.score, s.catalog_requirements, s.coverage))
            .collect();
        // CC6.1 partial, CC6.6 and CC7.2 pass, all under the security
        // category, whose 33 common criteria are the coverage's whole.
        assert_eq!(soc2, vec![("security", 83.33, Some(33), Some(9.09))]);
        // PCI DSS by principal requirement: 2.2.6 under 2, 8.3.1 under 8.
        let pci: Vec<&str> = by_section.iter().filter(|s| s.framework == "pci-dss").map(|s| s.group.as_str()).collect();
        assert_eq!(pci, ["2", "8"]);
        // NIST SP 800-53 by family: AC-2 is one of the access control
        // family's 131 controls and enhancements in force.
        let text = "pack: t\ncontrols:\n  - {id: a, title: a, severity: high, check: 'x.a', frameworks: {nist-800-53: [AC-2]}}\n";
        let mut nist = PolicySet::new(crate::policy::load_text(Path::new("t.yaml"), text).unwrap());
        let s = scores(&nist, &[r("h1", "web", "a", Status::Pass, 1)], None, &GroupBy::Section, none());
        assert_eq!((s[0].group.as_str(), s[0].coverage, s[0].catalog_requirements), ("AC", Some(0.76), Some(131)));
        // A framework without a catalog: one group, no coverage.
        nist.catalogs = Default::default();
        let s = scores(&nist, &[r("h1", "web", "a", Status::Pass, 1)], None, &GroupBy::Section, none());
        assert_eq!((s[0].group.as_str(), s[0].coverage, s[0].catalog_requirements), ("(no catalog)", None, None));
        assert_eq!("section".parse::<GroupBy>(), Ok(GroupBy::Section));
    }

    #[test]
    fn gaps_filter_by_asset_owner_and_severity() {
        let p = policies();
        let rs = vec![r("h1", "web", "a", Status::Fail, 1), r("h1", "web", "b", Status::Fail, 10), r("h2", "db", "c", Status::Fail, 2)];
        let now = Utc::now();
        let of = |f: GapFilter| {
            f.gaps(&p, &rs, Some("soc2"), none(), now, &Default::default()).into_iter().map(|g| g.requirement).collect::<Vec<_>>()
        };
        assert_eq!(of(GapFilter::default()).len(), 3);
        assert_eq!(of(GapFilter { owner: Some("db"), ..Default::default() }), ["CC7.2"], "team db owns h2");
        assert_eq!(of(GapFilter { asset: Some("h1"), ..Default::default() }).len(), 2, "CC6.1 and CC6.6 fail on h1");
        assert_eq!(of(GapFilter { min_severity: Some(Severity::Critical), ..Default::default() }), ["CC6.1"], "b is critical");
        assert!(of(GapFilter { asset: Some("h2"), owner: Some("web"), ..Default::default() }).is_empty());
    }

    #[test]
    fn gaps_have_severity_owner_and_due_date() {
        let p = policies();
        let rs = vec![r("h1", "web", "a", Status::Pass, 1), r("h1", "web", "b", Status::Fail, 10), r("h2", "db", "c", Status::Fail, 2)];
        let g = gaps(&p, &rs, None, none(), Utc::now());
        let ids: Vec<(&str, &str)> = g.iter().map(|g| (g.framework.as_str(), g.requirement.as_str())).collect();
        // b is critical (7 days) and failing for 10: overdue, first.
        assert_eq!(ids, vec![("pci-dss", "8.3.1"), ("soc2", "CC6.1"), ("soc2", "CC7.2")]);
        assert!(g[0].overdue);
        assert_eq!(g[1].status, RequirementStatus::Partial);
        assert_eq!(g[1].owners, vec!["web"]);
        assert_eq!(g[2].severity, Severity::Low);
        assert_eq!(g[2].due - g[2].first_seen, Duration::days(90));
        assert!(!g[2].overdue);
    }

    #[test]
    fn group_by_parses() {
        assert_eq!("label:env".parse::<GroupBy>(), Ok(GroupBy::Label("env".into())));
        assert!("label:".parse::<GroupBy>().is_err());
    }
}
