//! Waivers (exceptions): a control, or one framework requirement, exempted
//! for a scope of assets until an expiry date, with a justification, an
//! approver, a risk rating and a ticket.
//!
//! A waived failing control is `waived`, never `pass`: scores count it
//! separately, and when the waiver expires (or is revoked) the control
//! fails again and its violation reopens. Waivers are declared in YAML next
//! to the policy packs (any file whose top-level key is `waivers:`) or
//! created through the API and the CLI; the store keeps all of them, with
//! their history, so posture at a past instant uses the waivers in force
//! then. [`crate::tasks::waivers`] keeps the collector's set current ([`sync`]: the pure steps).

pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::{PolicyError, PolicyErrors, PolicySet, Severity};
use crate::store::records::WaiverRow;
use crate::store::{secs, time};

/// What a waiver says, as declared in YAML or posted to the API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaiverSpec {
    /// Unique id (letters, digits, `.`, `_`, `-`); generated when an API
    /// or CLI request leaves it out.
    #[serde(default)]
    pub id: String,
    /// The control exempted, or …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// … one framework requirement, as `framework:requirement`
    /// (`pci-dss:2.2.6`): every check mapped to it, in that framework only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement: Option<String>,
    pub scope: Scope,
    pub justification: String,
    pub approver: String,
    pub risk: Severity,
    /// Ticket id or link.
    #[serde(default)]
    pub ticket: String,
    /// In force from (default: when it is first recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<DateTime<Utc>>,
    pub expires: DateTime<Utc>,
}

/// Which assets a waiver covers: every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Asset ids; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<String>,
    /// Label selector: every listed label must have the given value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Shorthand for the label `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Shorthand for the label `namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The whole fleet; must be said explicitly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fleet: bool,
}

impl Scope {
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty() && self.labels.is_empty() && self.cluster.is_none() && self.namespace.is_none() && !self.fleet
    }

    pub fn matches(&self, asset_id: &str, labels: &BTreeMap<String, String>) -> bool {
        let label = |k: &str, v: &Option<String>| v.as_ref().is_none_or(|v| labels.get(k) == Some(v));
        (self.assets.is_empty() || self.assets.iter().any(|a| a == asset_id))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && label("cluster", &self.cluster)
            && label("namespace", &self.namespace)
    }
}

/// A recorded waiver: what it says, and its provenance and lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiver {
    #[serde(flatten)]
    pub spec: WaiverSpec,
    /// `file:line` for a declared waiver, `api` or `cli` otherwise.
    pub source: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revoked_by: String,
}

impl Waiver {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// In force at `t`: started, not expired, not revoked.
    pub fn in_force(&self, t: DateTime<Utc>) -> bool {
        self.spec.starts.is_none_or(|s| s <= t) && t < self.spec.expires && self.revoked_at.is_none_or(|r| t < r)
    }

    /// In force at any instant of `[from, to]`.
    pub fn in_force_during(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        let end = self.revoked_at.map_or(self.spec.expires, |r| r.min(self.spec.expires));
        self.spec.starts.is_none_or(|s| s <= to) && from < end
    }

    /// What it exempts: the control, or `framework:requirement`.
    pub fn target(&self) -> &str {
        self.spec.control.as_deref().or(self.spec.requirement.as_deref()).unwrap_or_default()
    }

    /// `in_force`, `pending`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.spec.expires <= now {
            "expired"
        } else if self.in_force(now) {
            "in_force"
        } else {
            "pending"
        }
    }

    /// The requirement, split.
    pub fn requirement(&self) -> Option<(&str, &str)> {
        self.spec.requirement.as_deref().and_then(|r| r.split_once(':'))
    }

    /// One line for results and alerts.
    pub fn describe(&self) -> String {
        let ticket = if self.spec.ticket.is_empty() { String::new() } else { format!(", {}", self.spec.ticket) };
        format!(
            "waived by {} until {} (approved by {}, risk {}{ticket}): {}",
            self.spec.id,
            self.spec.expires.format("%Y-%m-%dT%H:%M:%SZ"),
            self.spec.approver,
            self.spec.risk.as_str(),
            self.spec.justification
        )
    }
}

impl Waiver {
    /// The row of this waiver's new version, written at `now` (the latest
    /// version wins).
    pub fn row(&self, now: DateTime<Utc>) -> WaiverRow {
        let w = self;
        WaiverRow {
            waiver_id: w.spec.id.clone(),
            control_id: w.spec.control.clone().unwrap_or_default(),
            requirement: w.spec.requirement.clone().unwrap_or_default(),
            scope: serde_json::to_string(&w.spec.scope).unwrap_or_default(),
            justification: w.spec.justification.clone(),
            approver: w.spec.approver.clone(),
            risk: w.spec.risk.as_str().into(),
            ticket: w.spec.ticket.clone(),
            starts_at: w.spec.starts.map_or(0, |s| secs(&s)),
            expires_at: secs(&w.spec.expires),
            revoked_at: w.revoked_at.map_or(0, |r| secs(&r)),
            revoked_by: w.revoked_by.clone(),
            created_by: w.created_by.clone(),
            source: w.source.clone(),
            updated_at: secs(&now),
            // Microseconds: a revocation right after creation still wins.
            version: now.timestamp_micros().max(0) as u64,
        }
    }

    /// The waiver of a stored row; `None` (with an error log) when its
    /// scope is unreadable.
    pub fn from_row(r: WaiverRow) -> Option<Waiver> {
        let this = r;
        let scope: Scope = match serde_json::from_str(&this.scope) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(waiver = %this.waiver_id, error = %e, "stored waiver has an unreadable scope; ignored");
                return None;
            }
        };
        let risk: Severity = serde_json::from_value(serde_json::Value::String(this.risk.clone())).unwrap_or(Severity::High);
        Some(Waiver {
            spec: WaiverSpec {
                id: this.waiver_id,
                control: Some(this.control_id).filter(|c| !c.is_empty()),
                requirement: Some(this.requirement).filter(|c| !c.is_empty()),
                scope,
                justification: this.justification,
                approver: this.approver,
                risk,
                ticket: this.ticket,
                starts: (this.starts_at > 0).then(|| time(this.starts_at)),
                expires: time(this.expires_at),
            },
            source: this.source,
            created_by: this.created_by,
            revoked_at: (this.revoked_at > 0).then(|| time(this.revoked_at)),
            revoked_by: this.revoked_by,
        })
    }

    /// The waivers of stored rows that can still be read.
    pub fn from_rows(rows: Vec<WaiverRow>) -> Vec<Waiver> {
        rows.into_iter().filter_map(Waiver::from_row).collect()
    }
}

impl WaiverSpec {
    /// Problems with the waiver on its own (each names the field).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            p.push(format!("id {:?}: must be non-empty and use only letters, digits, '.', '_' and '-'", self.id));
        }
        match (&self.control, &self.requirement) {
            (Some(_), Some(_)) => p.push("give either control or requirement, not both".into()),
            (None, None) => p.push("control or requirement: one is required".into()),
            (None, Some(r)) => match r.split_once(':') {
                Some((fw, id)) if !id.is_empty() => {
                    if crate::policy::frameworks::framework(fw).is_none() {
                        p.push(format!("requirement {r:?}: unknown framework {fw:?}"));
                    }
                }
                _ => p.push(format!("requirement {r:?}: expected framework:requirement, e.g. pci-dss:2.2.6")),
            },
            (Some(c), None) if c.is_empty() => p.push("control: must not be empty".into()),
            _ => {}
        }
        if self.scope.is_empty() {
            p.push("scope: give assets, labels, cluster or namespace (or fleet: true for every asset)".into());
        }
        if self.justification.trim().is_empty() {
            p.push("justification: required".into());
        }
        if self.approver.trim().is_empty() {
            p.push("approver: required".into());
        }
        if let Some(s) = self.starts {
            if s >= self.expires {
                p.push(format!("expires ({}) must be after starts ({s})", self.expires));
            }
        }
        p
    }
}

/// The waivers known to the collector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Waivers {
    pub list: Vec<Waiver>,
    /// Why some cannot take effect (see [`flags`]).
    pub flags: Vec<String>,
}

impl Waivers {
    pub fn new(list: Vec<Waiver>) -> Self {
        Waivers { list, flags: Vec::new() }
    }

    /// The waiver in force at `at` that exempts `control` on the asset.
    pub fn for_control(&self, control: &str, asset_id: &str, labels: &BTreeMap<String, String>, at: DateTime<Utc>) -> Option<&Waiver> {
        self.list.iter().find(|w| w.spec.control.as_deref() == Some(control) && w.in_force(at) && w.spec.scope.matches(asset_id, labels))
    }

    /// The waiver in force at `at` that exempts requirement `id` of
    /// `framework` on the asset.
    pub fn for_requirement(
        &self,
        framework: &str,
        id: &str,
        asset_id: &str,
        labels: &BTreeMap<String, String>,
        at: DateTime<Utc>,
    ) -> Option<&Waiver> {
        self.list.iter().find(|w| w.requirement() == Some((framework, id)) && w.in_force(at) && w.spec.scope.matches(asset_id, labels))
    }

    /// Ids of the control waivers in force at `at`, with their controls.
    pub fn control_waivers_in_force(&self, at: DateTime<Utc>) -> BTreeSet<(String, String)> {
        self.list.iter().filter(|w| w.in_force(at)).filter_map(|w| w.spec.control.clone().map(|c| (w.spec.id.clone(), c))).collect()
    }

    pub fn get(&self, id: &str) -> Option<&Waiver> {
        self.list.iter().find(|w| w.spec.id == id)
    }
}

/// A waiver requested through the CLI or the API: a generated id unless
/// given, in force from `now` unless it says otherwise, checked (each
/// problem names its field), with its provenance.
pub fn request(
    mut spec: WaiverSpec,
    source: &str,
    created_by: String,
    existing: &Waivers,
    now: DateTime<Utc>,
) -> Result<Waiver, Vec<String>> {
    if spec.id.is_empty() {
        spec.id = format!("w-{}", uuid::Uuid::now_v7().simple());
    }
    let mut problems = Vec::new();
    // A waiver recorded now cannot have been in force before: a start in
    // the past would rewrite posture already reported (a minute of clock
    // difference between client and collector is allowed).
    if spec.starts.is_some_and(|s| s < now - chrono::Duration::minutes(1)) {
        problems.push("starts: may not be before now (a waiver cannot be backdated)".to_string());
    }
    spec.starts = Some(spec.starts.unwrap_or(now).max(now));
    problems.extend(spec.problems());
    if existing.get(&spec.id).is_some() {
        problems.push(format!("id {:?}: a waiver with this id exists", spec.id));
    }
    if created_by.trim().is_empty() {
        problems.push("who creates the waiver must be named".into());
    }
    if problems.is_empty() {
        Ok(Waiver { spec, source: source.into(), created_by, revoked_at: None, revoked_by: String::new() })
    } else {
        Err(problems)
    }
}

/// Why a waiver cannot be revoked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RevokeError {
    #[error("no waiver {0}")]
    NotFound(String),
    #[error("waiver {0} is declared in {1}: remove it there")]
    Declared(String, String),
    #[error("waiver {0} was already revoked by {1}")]
    AlreadyRevoked(String, String),
}

/// The waiver `id` revoked at `now` by `by` (to be stored).
pub fn revoke(existing: &Waivers, id: &str, by: String, now: DateTime<Utc>) -> Result<Waiver, RevokeError> {
    let mut w = existing.get(id).cloned().ok_or_else(|| RevokeError::NotFound(id.into()))?;
    if w.created_by == sync::DECLARED_BY {
        return Err(RevokeError::Declared(id.into(), w.source));
    }
    if w.revoked_at.is_some() {
        return Err(RevokeError::AlreadyRevoked(id.into(), w.revoked_by));
    }
    w.revoked_at = Some(now);
    w.revoked_by = by;
    Ok(w)
}

/// Flags for waivers that cannot take effect against `policies`: a control
/// that no longer exists, a requirement no check maps to.
pub fn flags(waivers: &[Waiver], policies: &PolicySet) -> Vec<String> {
    let mut out = Vec::new();
    for w in waivers {
        if let Some(c) = &w.spec.control {
            if policies.get(c).is_none() {
                out.push(format!("{}: waiver {}: control {c:?} does not exist in the loaded packs", w.source, w.spec.id));
            }
        }
        if let Some((fw, id)) = w.requirement() {
            let mapped = policies.controls.iter().any(|c| c.control.frameworks.get(fw).is_some_and(|ids| ids.iter().any(|i| i == id)));
            if !mapped {
                out.push(format!("{}: waiver {}: no check maps to requirement {fw}:{id}", w.source, w.spec.id));
            }
        }
    }
    out
}

pub use crate::policy::is_waiver_file;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverFile {
    waivers: Vec<WaiverSpec>,
}

/// Parses and validates one waiver file; each waiver's source is
/// `file:line`.
pub fn load_text(file: &Path, text: &str) -> Result<Vec<Waiver>, Vec<PolicyError>> {
    let parsed: WaiverFile = serde_yaml::from_str(text)
        .map_err(|e| vec![PolicyError { file: file.to_path_buf(), line: e.location().map(|l| l.line()), message: e.to_string() }])?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for spec in parsed.waivers {
        let line = crate::policy::line_of_id(text, &spec.id);
        let problems = spec.problems();
        if problems.is_empty() {
            let source = match line {
                Some(l) => format!("{}:{l}", file.display()),
                None => file.display().to_string(),
            };
            out.push(Waiver { spec, source, created_by: "policies".into(), revoked_at: None, revoked_by: String::new() });
        } else {
            let id = spec.id.clone();
            errors.extend(problems.into_iter().map(|m| PolicyError {
                file: file.to_path_buf(),
                line,
                message: format!("waiver {id}: {m}"),
            }));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Loads every waiver file under `dir` (as [`crate::policy::load_dir`]
/// walks it). Ids must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Waiver>, PolicyErrors> {
    let mut files = Vec::new();
    crate::policy::collect_files(dir, &mut files)
        .map_err(|e| PolicyErrors(vec![PolicyError { file: dir.to_path_buf(), line: None, message: e.to_string() }]))?;
    files.sort();
    let mut errors = Vec::new();
    let mut all: Vec<Waiver> = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if !is_waiver_file(&text) {
            continue;
        }
        match load_text(&file, &text) {
            Ok(ws) => {
                for w in ws {
                    if let Some(first) = seen.get(&w.spec.id) {
                        errors.push(PolicyError {
                            file: file.clone(),
                            line: crate::policy::line_of_id(&text, &w.spec.id),
                            message: format!("duplicate waiver id {:?} (first declared in {})", w.spec.id, first.display()),
                        });
                        continue;
                    }
                    seen.insert(w.spec.id.clone(), file.clone());
                    all.push(w);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(all)
    } else {
        Err(PolicyErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FILE: &str = r#"waivers:
  - id: legacy-root
    control: root
    scope: {assets: [db-01]}
    justification: vendor appliance needs root login until migration
    approver: ciso@example.com
    risk: high
    ticket: SEC-123
    expires: 2026-12-31T00:00:00Z
  - id: dmz-ntp
    requirement: pci-dss:2.2.6
    scope: {labels: {zone: dmz}, cluster: prod}
    justification: appliance
    approver: ciso@example.com
    risk: low
    starts: 2026-06-01T00:00:00Z
    expires: 2026-07-01T00:00:00Z
"#;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn scope_and_time_decide_what_is_waived() {
        let ws = Waivers::new(load_text(Path::new("w.yaml"), FILE).unwrap());
        assert_eq!(ws.list[0].source, "w.yaml:2");
        let none = labels(&[]);
        assert!(ws.for_control("root", "db-01", &none, t(2026, 11, 1)).is_some());
        assert!(ws.for_control("root", "db-02", &none, t(2026, 11, 1)).is_none(), "another asset");
        assert!(ws.for_control("other", "db-01", &none, t(2026, 11, 1)).is_none(), "another control");
        assert!(ws.for_control("root", "db-01", &none, t(2026, 12, 31)).is_none(), "expired at the instant");
        let dmz = labels(&[("zone", "dmz"), ("cluster", "prod")]);
        assert!(ws.for_requirement("pci-dss", "2.2.6", "x", &dmz, t(2026, 6, 15)).is_some());
        assert!(ws.for_requirement("pci-dss", "2.2.6", "x", &dmz, t(2026, 5, 31)).is_none(), "not started");
        assert!(ws.for_requirement("pci-dss", "2.2.6", "x", &labels(&[("zone", "dmz")]), t(2026, 6, 15)).is_none(), "cluster differs");
        assert!(ws.for_requirement("soc2", "2.2.6", "x", &dmz, t(2026, 6, 15)).is_none(), "another framework");
    }

    #[test]
    fn a_revoked_waiver_stops_at_its_revocation() {
        let mut w = load_text(Path::new("w.yaml"), FILE).unwrap().remove(0);
        w.revoked_at = Some(t(2026, 11, 10));
        assert!(w.in_force(t(2026, 11, 9)) && !w.in_force(t(2026, 11, 10)));
        assert!(w.in_force_during(t(2026, 11, 1), t(2026, 11, 30)));
        assert!(!w.in_force_during(t(2026, 11, 11), t(2026, 11, 30)));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let bad = "waivers:\n  - id: w1\n    control: root\n    requirement: soc2:CC6.1\n    scope: {}\n    justification: ''\n    approver: x\n    risk: low\n    expires: 2026-01-01T00:00:00Z\n    starts: 2026-02-01T00:00:00Z\n";
        let errs: Vec<String> = load_text(Path::new("w.yaml"), bad).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(errs.iter().all(|e| e.starts_with("w.yaml:2: waiver w1: ")), "{errs:#?}");
        for needle in ["not both", "scope:", "justification", "expires"] {
            assert!(errs.iter().any(|e| e.contains(needle)), "{needle}: {errs:#?}");
        }
        let typo = "waivers:\n  - id: w1\n    control: root\n    scope: {fleet: true}\n    justification: j\n    approver: a\n    risk: low\n    expire: 2026-01-01T00:00:00Z\n";
        let e = load_text(Path::new("w.yaml"), typo).unwrap_err();
        assert!(e[0].to_string().contains("expire"), "{e:?}");
    }

    #[test]
    fn waivers_of_missing_controls_or_unmapped_requirements_are_flagged() {
        let pack = "pack: t\ncontrols:\n  - id: root\n    title: r\n    severity: high\n    check: sshd.config.permitrootlogin == \"no\"\n    frameworks: {soc2: [CC6.1], pci-dss: [\"2.2.6\"]}\n";
        let set = PolicySet::new(crate::policy::load_text(Path::new("p.yaml"), pack).unwrap());
        let mut ws = load_text(Path::new("w.yaml"), FILE).unwrap();
        assert!(flags(&ws, &set).is_empty());
        ws[0].spec.control = Some("gone".into());
        ws[1].spec.requirement = Some("pci-dss:9.9.9".into());
        let f = flags(&ws, &set);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].starts_with("w.yaml:2: waiver legacy-root: control \"gone\""), "{f:?}");
    }
}
