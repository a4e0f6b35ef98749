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

/// A mapping to a requirement the framework does not have is refused,
/// naming the control's file and line and the catalog it was checked
/// against; a catalog of the policy folder's own replaces the shipped one.
#[test]
fn a_mapping_outside_the_catalog_is_refused_with_its_location() {
    services_up();
    let d = tempfile::tempdir().unwrap();
    let st = Command::new("cp").arg("-a").arg(repo().join("policies")).arg(d.path()).status().unwrap();
    assert!(st.success());
    let dir = d.path().join("policies");
    let pack = dir.join("linux/sshd.yaml");
    let text = std::fs::read_to_string(&pack).unwrap();
    // CC6.9 has the shape of a SOC 2 id, but SOC 2 has no such criterion.
    let text = text.replacen("soc2: [CC6.1, CC6.6]", "soc2: [CC6.1, CC6.9]", 1);
    std::fs::write(&pack, &text).unwrap();
    let line = text.lines().position(|l| l.trim_start().starts_with("- id: linux.sshd.root_login_disabled")).unwrap() + 1;
    let (ok, out) = policies(&["check"], &dir);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "linux/sshd.yaml:{line}: control linux.sshd.root_login_disabled: soc2 has no requirement \"CC6.9\" (its catalog: {})",
            dir.join("frameworks/soc2.yaml").display()
        )),
        "{out}"
    );
    // An organisation that has its own criterion adds it to its catalog.
    let catalog = dir.join("frameworks/soc2.yaml");
    let with = std::fs::read_to_string(&catalog).unwrap() + "  - {id: CC6.9, group: CC6, title: Our own access criterion}\n";
    std::fs::write(&catalog, with).unwrap();
    let (ok, out) = policies(&["check"], &dir);
    assert!(ok, "{out}");
}
