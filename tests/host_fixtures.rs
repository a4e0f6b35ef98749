//! Fixture host trees through the real binaries: `driftwatch-agent
//! snapshot --root` is checked path by path against `<host>.expected`, no
//! password hash appears anywhere, and `driftwatch-collector evaluate`
//! gives the verdicts an auditor would.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use driftwatch_tests::{bin, repo, services_up};
use serde_json::Value;

/// Copies a fixture tree (links kept) and sets file modes: git does not
/// record them.
fn host(name: &str, shadow_mode: u32) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let src = repo().join("tests/fixtures/hosts").join(name);
    let st = Command::new("cp").arg("-a").arg(&src).arg(d.path()).status().unwrap();
    assert!(st.success());
    let root = d.path().join(name);
    for (f, mode) in [("etc/passwd", 0o644), ("etc/group", 0o644), ("etc/shadow", shadow_mode)] {
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    (d, root)
}

fn snapshot(root: &Path, format: &str) -> String {
    let out = Command::new(bin("driftwatch-agent")).args(["snapshot", "--format", format, "--root"]).arg(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn evaluate(snapshot_json: &str) -> BTreeMap<String, String> {
    let mut child = Command::new(bin("driftwatch-collector"))
        .args(["evaluate", "--snapshot", "-", "--policies"])
        .arg(repo().join("policies"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(snapshot_json.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results.iter().map(|r| (r["control_id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())).collect()
}

fn check_expected(name: &str, text: &str) {
    let expected = std::fs::read_to_string(repo().join(format!("tests/fixtures/hosts/{name}.expected"))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let missing: Vec<&str> =
        expected.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter(|l| !lines.contains(l)).collect();
    assert!(missing.is_empty(), "{name}: lines missing from the snapshot:\n{}\n--- snapshot ---\n{text}", missing.join("\n"));
    for hash in ["$y$", "$6$", "$1$", "hashvalue", "md5hash"] {
        assert!(!text.contains(hash), "{name}: a password hash leaked ({hash})");
    }
}

#[test]
fn hardened_host_facts_and_verdicts() {
    services_up();
    let (_d, root) = host("hardened", 0o640);
    check_expected("hardened", &snapshot(&root, "text"));
    let v = evaluate(&snapshot(&root, "json"));
    for c in [
        "linux.sshd.root_login_disabled",
        "linux.sshd.empty_passwords_refused",
        "linux.sshd.max_auth_tries",
        "linux.sshd.x11_forwarding_disabled",
        "linux.sshd.idle_timeout",
        "linux.sshd.max_startups",
        "linux.sshd.tcp_forwarding_disabled",
        "linux.sshd.agent_forwarding_disabled",
        "linux.files.passwd_protected",
        "linux.files.group_protected",
    ] {
        assert_eq!(v[c], "pass", "{c}: {v:#?}");
    }
    // Fixture files belong to whoever checked them out; uid 0 only as root.
    let as_root = std::fs::metadata(root.join("etc/shadow")).map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap();
    assert_eq!(v["linux.files.shadow_protected"], if as_root { "pass" } else { "fail" });
    assert_eq!(v["linux.files.gshadow_protected"], "not_applicable");
}

#[test]
fn sloppy_host_facts_and_verdicts() {
    services_up();
    let (_d, root) = host("sloppy", 0o644);
    check_expected("sloppy", &snapshot(&root, "text"));
    let v = evaluate(&snapshot(&root, "json"));
    for c in [
        "linux.sshd.root_login_disabled",
        "linux.sshd.empty_passwords_refused",
        "linux.sshd.max_auth_tries",
        "linux.files.shadow_protected",
    ] {
        assert_eq!(v[c], "fail", "{c}: {v:#?}");
    }
    // X11Forwarding is absent globally (OpenSSH's default, no) but a Match
    // block turns it on for alice: the control fails; so does MaxStartups
    // 10:30:100 (its full is over 60) and a scoped sudo timestamp_timeout.
    assert!(text_has(&root, "sshd.config.x11forwarding = \"no\""), "absent keyword takes OpenSSH's default (no)");
    for c in ["linux.sshd.x11_forwarding_disabled", "linux.sshd.max_startups", "linux.sudo.timestamp_timeout"] {
        assert_eq!(v[c], "fail", "{c}: {v:#?}");
    }
}

fn text_has(root: &Path, line: &str) -> bool {
    snapshot(root, "text").lines().any(|l| l == line)
}

#[test]
fn unreadable_files_become_error_facts_not_crashes() {
    services_up();
    let (_d, root) = host("hardened", 0o640);
    // A directory where a file is expected cannot be read as text.
    std::fs::remove_file(root.join("etc/login.defs")).unwrap();
    std::fs::create_dir(root.join("etc/login.defs")).unwrap();
    let text = snapshot(&root, "text");
    let errors = text.lines().find(|l| l.starts_with("accounts.errors = ")).expect("an error fact");
    assert!(errors.contains("/etc/login.defs"), "{errors}");
    assert!(text.contains("sshd.config.permitrootlogin = \"no\""), "other facts still collected");
}
