//! The shipped policy packs validate, every control's fixture cases pass,
//! and a wrong expectation is reported with its file and line.

use std::process::Command;

use driftwatch_tests::{bin, repo, services_up};

fn policies(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin("driftwatch-collector")).arg("policies").args(args).arg(dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn shipped_packs_check_and_their_cases_pass() {
    services_up();
    let dir = repo().join("policies");
    let (ok, text) = policies(&["check"], &dir);
    assert!(ok, "{text}");
    let (ok, text) = policies(&["test"], &dir);
    assert!(ok, "{text}");
    assert!(text.trim_end().ends_with(" passed, 0 failed"), "{text}");
}

#[test]
fn a_wrong_expectation_fails_with_its_location() {
    services_up();
    let d = tempfile::tempdir().unwrap();
    let st = Command::new("cp").arg("-a").arg(repo().join("policies")).arg(d.path()).status().unwrap();
    assert!(st.success());
    let cases = d.path().join("policies/linux/fixtures/sshd.yaml");
    let text = std::fs::read_to_string(&cases).unwrap().replacen("expect: fail", "expect: pass", 1);
    std::fs::write(&cases, text).unwrap();
    let (ok, out) = policies(&["test"], &d.path().join("policies"));
    assert!(!ok);
    assert!(out.contains("fixtures/sshd.yaml:5: case 2: linux.sshd.root_login_disabled: expected pass, got fail"), "{out}");
}
