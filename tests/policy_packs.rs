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

/// `policies import-xccdf` on SCAP Security Guide's Debian 11 data stream
/// (Debian's `ssg-debian`, installed by the services script): a skeleton
/// of the profile's rules, refused until its checks are written; with the
/// checks of the shipped controls that reference the same SSG rules, it
/// loads beside nothing else, its requirement mappings valid.
#[test]
fn an_ssg_profile_becomes_a_pack_skeleton() {
    services_up();
    let ds = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml";
    let out = Command::new(bin("driftwatch-collector"))
        .args(["policies", "import-xccdf", ds, "--profile", "standard", "--pack", "site"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules from Guide to the Secure Configuration of Debian 11"));
    let skeleton = String::from_utf8(out.stdout).unwrap();
    let mut pack: serde_yaml::Value = serde_yaml::from_str(&skeleton).unwrap();
    let controls = pack["controls"].as_sequence().unwrap().clone();
    assert!(controls.len() >= 40, "{} rules in the standard profile", controls.len());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("site.yaml"), &skeleton).unwrap();
    let (ok, said) = policies(&["check"], dir.path());
    assert!(!ok && said.contains("has none of `check`"), "{said}");

    // The shipped checks of the same SSG rules, written in.
    let shipped = driftwatch_collector::policy::load_dir(&repo().join("policies")).unwrap();
    let by_ssg: std::collections::BTreeMap<String, String> =
        shipped.controls.iter().filter_map(|c| Some((c.control.references.get("ssg")?.clone(), c.control.check.clone()?))).collect();
    let written: Vec<serde_yaml::Value> = controls
        .into_iter()
        .filter_map(|mut c| {
            let check = by_ssg.get(c["references"]["ssg"].as_str()?)?.clone();
            c.as_mapping()?.get("frameworks")?.as_mapping().filter(|f| !f.is_empty())?;
            c.as_mapping_mut()?.insert("check".into(), check.into());
            Some(c)
        })
        .collect();
    assert!(written.len() >= 10, "{} of the profile's rules have a shipped check and a mapping", written.len());
    let n = written.len();
    pack["controls"] = serde_yaml::Value::Sequence(written);
    std::fs::write(dir.path().join("site.yaml"), serde_yaml::to_string(&pack).unwrap()).unwrap();
    let (ok, said) = policies(&["check"], dir.path());
    assert!(ok && said.contains(&format!("{n} controls")), "{said}");
}
