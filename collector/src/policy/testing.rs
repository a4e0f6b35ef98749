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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::Utc;
use driftwatch_schemas::{Asset, AssetKind, FactPath, FactValue};
use serde::Deserialize;

use super::{PolicyError, PolicySet};
use crate::eval::{evaluate_all, Status};

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
}

fn host() -> AssetKind {
    AssetKind::Host
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
            let asset = Asset { id: "policy-test".into(), kind: case.kind, hostname: "policy-test".into(), labels: case.labels };
            let results = evaluate_all(set, &asset, &case.facts, "policy-test", 1, Utc::now());
            let got = results.iter().find(|r| r.control_id == id).map(|r| (r.status, r.message.clone()));
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
    for c in &set.controls {
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
        let set = super::super::load_dir(d.path()).unwrap();
        let r = run(d.path(), &set);
        assert_eq!(r.passed, 1);
        let msgs: Vec<String> = r.failures.iter().map(|f| f.to_string()).collect();
        assert!(msgs[0].ends_with("fixtures/t.yaml:4: case 2: t.root: expected pass, got fail"), "{msgs:#?}");
        assert!(msgs[1].contains(":7: case 3: no control \"nope\""), "{msgs:#?}");
        assert!(msgs[2].contains("control t.root has no case expecting fail"), "{msgs:#?}");
    }
}
