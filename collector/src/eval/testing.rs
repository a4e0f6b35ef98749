//! Policy-as-code tests (`driftwatch-collector policies test DIR`), in the
//! spirit of OPA's: every control ships cases — facts and the expected
//! result — in `fixtures/*.yaml` beside its pack, and every control must
//! have at least one passing and one failing case.
//!
//! ```yaml
//! - control: linux.sshd.root_login_disabled
//!   expect: fail                       # pass | fail | error | not_applicable
//!   kind: host                         # optional; default host
//!   labels: {env: prod}                # optional
//!   facts:
//!     sshd.config.permitrootlogin: "yes"
//! ```
//!
//! A detection's case lists the records it sees, in order; each is `after`
//! the previous one (default `1s`) and may `repeat`. The expected status is
//! the detection's at the end: `fail` if firing, else `pass`.
//!
//! ```yaml
//! - control: audit.ssh.brute_force
//!   expect: fail
//!   events:
//!     - {action: ssh_login_failed, outcome: failure, user: alice, repeat: 5, after: 20s}
//! - control: sla.probe.failing
//!   expect: pass
//!   probes:
//!     - {id: web, success: false, after: 10m, repeat: 3}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use driftwatch_schemas::{
    Actor, Asset, AssetKind, AuditEvent, AuditSource, FactPath, FactValue, HostMetrics, Message, Outcome, ProbeKind, SlaMeasurement,
};
use serde::Deserialize;

use super::detect::{Detector, Raw};
use super::facts::CelFacts;
use super::{evaluate_all, Status};
use crate::policy::{PolicyError, PolicySet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    control: String,
    expect: Status,
    #[serde(default = "host")]
    kind: AssetKind,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    facts: BTreeMap<String, FactValue>,
    #[serde(default)]
    events: Vec<CaseEvent>,
    #[serde(default)]
    probes: Vec<CaseProbe>,
}

fn host() -> AssetKind {
    AssetKind::Host
}

fn one() -> u32 {
    1
}

/// An audit event in a case; unset fields take neutral defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEvent {
    after: Option<String>,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default = "auditd")]
    source: AuditSource,
    action: String,
    #[serde(default = "unknown")]
    outcome: Outcome,
    user: Option<String>,
    uid: Option<i64>,
    auid: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    object: Option<String>,
    source_address: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

fn auditd() -> AuditSource {
    AuditSource::Auditd
}

fn unknown() -> Outcome {
    Outcome::Unknown
}

/// A probe result in a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseProbe {
    after: Option<String>,
    #[serde(default = "one")]
    repeat: u32,
    #[serde(default = "probe_id")]
    id: String,
    #[serde(default)]
    target: String,
    #[serde(default = "http")]
    kind: ProbeKind,
    #[serde(default = "yes")]
    success: bool,
    #[serde(default)]
    latency_ms: f64,
    status_code: Option<i32>,
    error: Option<String>,
    /// Host metrics (a `host` probe): all four or none.
    cpu_percent: Option<f64>,
    memory_used_percent: Option<f64>,
    disk_used_percent: Option<f64>,
    load1: Option<f64>,
}

fn probe_id() -> String {
    "probe".into()
}
fn http() -> ProbeKind {
    ProbeKind::Http
}
fn yes() -> bool {
    true
}

/// The records of a case, stamped from a fixed start.
fn records(case: &Case) -> Result<Vec<Message>, String> {
    let mut at = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
    let step = |after: &Option<String>| -> Result<chrono::Duration, String> {
        let text = after.as_deref().unwrap_or("1s");
        let d = humantime::parse_duration(text).map_err(|e| format!("after {text:?}: {e}"))?;
        chrono::Duration::from_std(d).map_err(|e| format!("after {text:?}: {e}"))
    };
    let mut out = Vec::new();
    for e in &case.events {
        for _ in 0..e.repeat {
            at += step(&e.after)?;
            let ev = AuditEvent {
                event_id: format!("case-event-{}", out.len() + 1),
                asset_id: "policy-test".into(),
                hostname: "policy-test".into(),
                source: e.source,
                timestamp: at,
                actor: Actor { user: e.user.clone(), uid: e.uid, auid: e.auid.clone(), groups: e.groups.clone() },
                action: e.action.clone(),
                object: e.object.clone(),
                outcome: e.outcome,
                source_address: e.source_address.clone(),
                raw: String::new(),
                extra: e.extra.clone(),
            };
            out.push(Message::Audit(ev));
        }
    }
    for p in &case.probes {
        for _ in 0..p.repeat {
            at += step(&p.after)?;
            let host_metrics = match (p.cpu_percent, p.memory_used_percent, p.disk_used_percent, p.load1) {
                (Some(cpu), Some(mem), Some(disk), Some(load1)) => Some(HostMetrics {
                    cpu_percent: cpu,
                    memory_used_bytes: (mem * 1e6) as i64,
                    memory_total_bytes: 100_000_000,
                    disk_used_percent: disk,
                    load1,
                }),
                (None, None, None, None) => None,
                _ => return Err("host metrics need all of cpu_percent, memory_used_percent, disk_used_percent and load1".into()),
            };
            let m = SlaMeasurement {
                asset_id: "policy-test".into(),
                probe_id: p.id.clone(),
                target: p.target.clone(),
                kind: p.kind,
                timestamp: at,
                success: p.success,
                latency_us: (p.latency_ms * 1000.0) as i64,
                status_code: p.status_code,
                error: p.error.clone(),
                host_metrics,
                cert_days_left: None,
                agent_health: None,
            };
            out.push(Message::Sla(m));
        }
    }
    Ok(out)
}

/// The status a case yields for control `id`, `None` if it doesn't apply.
fn outcome(set: &PolicySet, id: &str, case: &Case) -> Result<Option<(Status, Option<String>)>, String> {
    let Some((index, control)) = set.get(id) else { return Ok(None) };
    let asset = Asset { id: "policy-test".into(), kind: case.kind, hostname: "policy-test".into(), labels: case.labels.clone() };
    if control.attest.is_some() {
        return Ok(None);
    }
    if control.detect.is_none() {
        let results = evaluate_all(set, &asset, &case.facts, "policy-test", 1, Utc::now());
        return Ok(results.into_iter().find(|r| r.control_id == id).map(|r| (r.status, r.message)));
    }
    if !control.applies_to(asset.kind, &asset.labels) {
        return Ok(None);
    }
    let mut detector = Detector::default();
    let mut last = None;
    let facts = CelFacts::build(&case.facts);
    for m in records(case)? {
        let Some(raw) = Raw::of(&m) else { continue };
        if let Some(c) =
            detector.observe(set, raw, Some(&facts), |c| c.applies_to(asset.kind, &asset.labels)).into_iter().find(|c| c.control == index)
        {
            last = Some(c.message);
        }
    }
    Ok(Some(if detector.is_firing("policy-test", index) { (Status::Fail, last) } else { (Status::Pass, None) }))
}

/// The outcome of running every case.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failures: Vec<PolicyError>,
}

/// Runs every case file under `dir` (any `fixtures` folder) against `set`.
pub fn run(dir: &Path, set: &PolicySet) -> Report {
    let mut report = Report::default();
    let mut files = Vec::new();
    collect_case_files(dir, false, &mut files);
    files.sort();
    let ids: BTreeSet<&str> = set.controls.iter().map(|c| c.control.id.as_str()).collect();
    let mut seen: BTreeMap<&str, BTreeSet<Status>> = BTreeMap::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                report.failures.push(PolicyError { file: file.clone(), line: None, message: format!("cannot read: {e}") });
                continue;
            }
        };
        let cases: Vec<Case> = match serde_yaml::from_str(&text) {
            Ok(c) => c,
            Err(e) => {
                report.failures.push(PolicyError { file: file.clone(), line: e.location().map(|l| l.line()), message: e.to_string() });
                continue;
            }
        };
        let lines = case_lines(&text);
        for (i, case) in cases.into_iter().enumerate() {
            let line = lines.get(i).copied();
            let fail = |message: String| PolicyError { file: file.clone(), line, message };
            let Some(id) = ids.get(case.control.as_str()).copied() else {
                report.failures.push(fail(format!("case {}: no control {:?}", i + 1, case.control)));
                continue;
            };
            if let Some(bad) = case.facts.keys().find(|p| FactPath::parse(p).is_err()) {
                report.failures.push(fail(format!("case {}: {bad:?} is not a fact path", i + 1)));
                continue;
            }
            let got = match outcome(set, id, &case) {
                Ok(g) => g,
                Err(e) => {
                    report.failures.push(fail(format!("case {}: {e}", i + 1)));
                    continue;
                }
            };
            let got_status = got.as_ref().map(|g| g.0);
            if got_status == Some(case.expect) {
                report.passed += 1;
                seen.entry(id).or_default().insert(case.expect);
            } else {
                let got = match got {
                    None => "the control does not apply to this asset".to_string(),
                    Some((s, m)) => format!("{}{}", s.as_str(), m.map(|m| format!(" ({m})")).unwrap_or_default()),
                };
                report.failures.push(fail(format!("case {}: {id}: expected {}, got {got}", i + 1, case.expect.as_str())));
            }
        }
    }
    // An attested control's result is what people attest, not a check's:
    // it has no cases.
    for c in set.controls.iter().filter(|c| c.attest.is_none()) {
        let s = seen.get(c.control.id.as_str());
        for need in [Status::Pass, Status::Fail] {
            if !s.is_some_and(|s| s.contains(&need)) {
                report.failures.push(PolicyError {
                    file: c.source.clone(),
                    line: None,
                    message: format!("control {} has no case expecting {} in a fixtures/ file", c.control.id, need.as_str()),
                });
            }
        }
    }
    report
}

fn collect_case_files(dir: &Path, in_fixtures: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let f = in_fixtures || p.file_name().is_some_and(|n| n == "fixtures");
            collect_case_files(&p, f, out);
        } else if in_fixtures && p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The line of each top-level `- control:` item, for messages.
fn case_lines(text: &str) -> Vec<usize> {
    text.lines().enumerate().filter(|(_, l)| l.starts_with("- ")).map(|(i, _)| i + 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const PACK: &str = "pack: t\ncontrols:\n  - id: t.root\n    title: t\n    severity: high\n    check: sshd.config.permitrootlogin == \"no\"\n    frameworks: {soc2: [CC6.1], pci-dss: [\"2.2.6\"]}\n";

    #[test]
    fn passing_failing_and_missing_cases() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "linux/t.yaml", PACK);
        write(
            d.path(),
            "linux/fixtures/t.yaml",
            "- control: t.root\n  expect: pass\n  facts: {sshd.config.permitrootlogin: \"no\"}\n- control: t.root\n  expect: pass\n  facts: {sshd.config.permitrootlogin: \"yes\"}\n- control: nope\n  expect: pass\n",
        );
        let set = crate::policy::load_dir(d.path()).unwrap();
        let r = run(d.path(), &set);
        assert_eq!(r.passed, 1);
        let msgs: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
        assert!(msgs[0].ends_with("fixtures/t.yaml:4: case 2: t.root: expected pass, got fail"), "{msgs:#?}");
        assert!(msgs[1].contains(":7: case 3: no control \"nope\""), "{msgs:#?}");
        assert!(msgs[2].contains("control t.root has no case expecting fail"), "{msgs:#?}");
    }

    #[test]
    fn detection_cases_count_records_in_the_window() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "audit/p.yaml",
            r#"pack: a
controls:
  - id: a.brute
    title: brute force
    severity: high
    detect:
      stream: audit
      match: event.action == "ssh_login_failed"
      group_by: [event.actor.user]
      threshold: 3
      window: 1m
    frameworks: {soc2: [CC6.1], pci-dss: ["10.2.1"]}
"#,
        );
        write(
            d.path(),
            "audit/fixtures/p.yaml",
            r#"- control: a.brute
  expect: fail
  events: [{action: ssh_login_failed, user: alice, repeat: 3, after: 10s}]
- control: a.brute
  expect: pass
  events: [{action: ssh_login_failed, user: alice, repeat: 3, after: 40s}]
- control: a.brute
  expect: pass
  events: [{action: ssh_login_failed, user: alice, repeat: 2}, {action: ssh_login_failed, user: bob}]
- control: a.brute
  expect: fail
  events: [{action: ssh_login_failed, user: alice, repeat: 2}, {action: sudo, user: alice}, {action: ssh_login_failed, user: alice}]
"#,
        );
        let set = crate::policy::load_dir(d.path()).unwrap();
        let r = run(d.path(), &set);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
        assert_eq!(r.passed, 4);
    }
}
