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

/// `driftwatch-collector evaluate` of a snapshot with extra arguments: its
/// output and exit status.
fn evaluate_with(snapshot_json: &str, args: &[&str]) -> (std::process::Output, String) {
    let mut child = Command::new(bin("driftwatch-collector"))
        .args(["evaluate", "--snapshot", "-", "--policies"])
        .arg(repo().join("policies"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(snapshot_json.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out, stdout)
}

fn evaluate(snapshot_json: &str) -> BTreeMap<String, String> {
    let (out, _) = evaluate_with(snapshot_json, &[]);
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
    let text = snapshot(&root, "text");
    check_expected("sloppy", &text);
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
    assert!(text.lines().any(|l| l == "sshd.config.x11forwarding = \"no\""), "absent keyword takes OpenSSH's default (no)");
    for c in ["linux.sshd.x11_forwarding_disabled", "linux.sshd.max_startups", "linux.sudo.timestamp_timeout"] {
        assert_eq!(v[c], "fail", "{c}: {v:#?}");
    }

    // In a CI pipeline: JUnit XML, and a gate on severity.
    let json = snapshot(&root, "json");
    let (out, xml) = evaluate_with(&json, &["--format", "junit", "--fail-on", "critical"]);
    assert_eq!(out.status.code(), Some(1), "a critical control fails: the gate closes\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("of severity critical or above fail"));
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>") && xml.contains("<testsuites name="), "{xml}");
    let failures = v.values().filter(|s| *s == "fail").count();
    assert!(xml.contains(&format!("failures=\"{failures}\"")), "one failure per failing control ({failures}):\n{xml}");
    assert!(xml.contains("<testcase name=\"linux.sshd.root_login_disabled (SSH root login is disabled)\""), "{xml}");
    assert!(xml.contains("fix: Set `PermitRootLogin no`"), "{xml}");
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

/// Where OpenSCAP's verdict and ours differ on a fixture host, and why
/// ours stands (`tests/fixtures/openscap/accepted.yaml`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Accepted {
    host: String,
    control: String,
    ours: String,
    openscap: String,
    reason: String,
}

/// The SCAP Security Guide's data stream the fixture hosts are scanned
/// with (Debian's `ssg-debian`; its newest Debian content is Debian 11's).
const SSG_DS: &str = "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml";

/// Each shipped control's `references.ssg` rule.
fn ssg_references() -> BTreeMap<String, String> {
    ssg_references_with_partial().into_iter().map(|(id, (rule, _))| (id, rule)).collect()
}

/// Each shipped control's `references.ssg` rule, and its
/// `references.ssg_partial` (how it differs from the rule) if any.
fn ssg_references_with_partial() -> BTreeMap<String, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    for dir in ["policies/linux", "policies/kubernetes", "policies/audit", "policies/sla"] {
        for e in std::fs::read_dir(repo().join(dir)).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(e.path());
            }
        }
    }
    for f in files {
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for c in doc["controls"].as_sequence().into_iter().flatten() {
            if let (Some(id), Some(rule)) = (c["id"].as_str(), c["references"]["ssg"].as_str()) {
                out.insert(id.to_string(), (rule.to_string(), c["references"]["ssg_partial"].as_str().map(String::from)));
            }
        }
    }
    out
}

/// OpenSCAP's result for each of `rules` on the tree at `root`, scanned
/// offline (`OSCAP_PROBE_ROOT`) as the Debian release the content is for.
fn openscap(root: &Path, rules: &[&String]) -> BTreeMap<String, String> {
    let scan = tempfile::tempdir().unwrap();
    let tree = scan.path().join("root");
    assert!(Command::new("cp").arg("-a").arg(root).arg(&tree).status().unwrap().success());
    // The content applies to Debian 11 only (its CPE check reads these).
    std::fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"11\"\nID=debian\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/debian_version"), "11.9\n").unwrap();
    // OpenSCAP's package probe opens the tree's dpkg database through apt:
    // it needs dpkg's architecture tables there, and apt's package cache,
    // which the host's apt configuration may turn off (Docker images'
    // `docker-clean` does): apt reads no host configuration parts.
    std::fs::create_dir_all(tree.join("usr/share/dpkg")).unwrap();
    for table in ["cputable", "tupletable", "ostable", "abitable"] {
        let (from, to) = (Path::new("/usr/share/dpkg").join(table), tree.join("usr/share/dpkg").join(table));
        if from.exists() && !to.exists() {
            std::fs::copy(from, to).unwrap();
        }
    }
    for d in ["var/lib/apt/lists/partial", "var/cache/apt/archives/partial"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    // Mounted as its fstab says (OpenSCAP's partition probe reads what is
    // mounted: /proc/mounts of the tree, and the mount points).
    let fstab = std::fs::read_to_string(tree.join("etc/fstab")).unwrap_or_default();
    let mut mounts = String::new();
    for f in fstab.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
        if let [device, point, fstype, options, ..] = f[..] {
            mounts += &format!("{device} {point} {fstype} {options} 0 0\n");
            std::fs::create_dir_all(tree.join(point.trim_start_matches('/'))).unwrap();
        }
    }
    std::fs::create_dir_all(tree.join("proc")).unwrap();
    std::fs::write(tree.join("proc/mounts"), mounts).unwrap();
    let parts = scan.path().join("apt-parts");
    std::fs::create_dir_all(&parts).unwrap();
    let apt_config = scan.path().join("apt.conf");
    std::fs::write(&apt_config, format!("Dir::Etc::parts \"{}\";\n", parts.display())).unwrap();
    let results = scan.path().join("results.xml");
    let mut cmd = Command::new("oscap");
    cmd.env("OSCAP_PROBE_ROOT", &tree).env("APT_CONFIG", &apt_config).args(["xccdf", "eval", "--results"]).arg(&results);
    for r in rules {
        cmd.arg("--rule").arg(format!("xccdf_org.ssgproject.content_rule_{r}"));
    }
    let out = cmd.arg(SSG_DS).output().expect("oscap runs (deploy/local/services up installs openscap-scanner)");
    // Exit 2 means some rule failed: a result, not an error.
    assert!(matches!(out.status.code(), Some(0 | 2)), "oscap: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&results).unwrap();
    let re =
        regex::Regex::new(r#"(?s)<rule-result[^>]*idref="xccdf_org\.ssgproject\.content_rule_([^"]+)"[^>]*>.*?<result>(\w+)</result>"#)
            .unwrap();
    re.captures_iter(&xml).map(|c| (c[1].to_string(), c[2].to_string())).filter(|(_, r)| r != "notselected").collect()
}

/// Our verdicts on the fixture hosts against OpenSCAP with the SCAP
/// Security Guide, rule by rule (each control's `references.ssg`): where
/// both give pass or fail they must agree, or the difference be listed
/// in `tests/fixtures/openscap/accepted.yaml` with the reason our verdict
/// stands; a listed difference that no longer occurs fails too. Prints
/// the agreement.
#[test]
fn verdicts_agree_with_openscap_or_the_difference_is_explained() {
    services_up();
    assert!(Path::new(SSG_DS).exists(), "{SSG_DS} missing: deploy/local/services up installs ssg-debian");
    let refs = ssg_references();
    assert!(refs.len() >= 100, "the packs reference {} SSG rules", refs.len());
    let accepted: Vec<Accepted> =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/openscap/accepted.yaml")).unwrap()).unwrap();
    // Rules the Debian content has (some references name rules of other
    // distributions' content).
    let ds = std::fs::read_to_string(SSG_DS).unwrap();
    let mut rules: Vec<&String> =
        refs.values().filter(|r| ds.contains(&format!(" id=\"xccdf_org.ssgproject.content_rule_{r}\""))).collect();
    rules.sort();
    rules.dedup();
    println!(
        "{} controls reference {} SSG rules; the Debian 11 content has {}",
        refs.len(),
        refs.values().collect::<std::collections::BTreeSet<_>>().len(),
        rules.len()
    );
    let (mut compared, mut agreed, mut problems, mut seen) = (0, 0, Vec::new(), Vec::new());
    for (name, mode) in [("hardened", 0o640), ("sloppy", 0o644)] {
        let (_d, root) = host(name, mode);
        let ours = evaluate(&snapshot(&root, "json"));
        let theirs = openscap(&root, &rules);
        for (control, rule) in &refs {
            let (Some(o), Some(t)) = (ours.get(control), theirs.get(rule)) else { continue };
            if !matches!(o.as_str(), "pass" | "fail") || !matches!(t.as_str(), "pass" | "fail") {
                continue;
            }
            compared += 1;
            let listed = accepted.iter().find(|a| a.host == name && &a.control == control);
            if o == t {
                agreed += 1;
                if listed.is_some() {
                    problems.push(format!("{name} {control}: listed as a difference, but both say {o} now"));
                }
                continue;
            }
            println!("  {name:<9} {control:<45} ours {o:<5} openscap {t:<5} ({rule})");
            match listed {
                Some(a) if &a.ours == o && &a.openscap == t && !a.reason.trim().is_empty() => seen.push((name, control.clone())),
                _ => problems.push(format!("{name} {control} ({rule}): ours {o}, OpenSCAP {t}: not explained in accepted.yaml")),
            }
        }
    }
    println!("OpenSCAP agreement on the fixture hosts: {agreed} of {compared} comparable verdicts ({} explained differences)", seen.len());
    for a in &accepted {
        if !seen.iter().any(|(h, c)| *h == a.host && *c == a.control) && !problems.iter().any(|p| p.contains(&a.control)) {
            problems
                .push(format!("{} {}: listed in accepted.yaml but not compared (no longer a pass/fail on both sides)", a.host, a.control));
        }
    }
    assert!(compared >= 20, "only {compared} verdicts were comparable: the scan did not run as intended");
    assert!(problems.is_empty(), "{} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}

/// The controls whose SSG rule the Debian content lacks (so OpenSCAP
/// cannot give a verdict to compare) were audited by hand:
/// `tests/fixtures/openscap/audit.yaml` lists each once with what the rule
/// checks and whether the control checks the same, was mended, or checks
/// otherwise (`partial`, exactly where the pack says `ssg_partial`).
#[test]
fn ssg_references_outside_the_debian_content_are_audited() {
    services_up();
    assert!(Path::new(SSG_DS).exists(), "{SSG_DS} missing: deploy/local/services up installs ssg-debian");
    let content = std::fs::read_to_string(SSG_DS).unwrap();
    let refs = ssg_references_with_partial();
    let outside: BTreeMap<&String, &(String, Option<String>)> =
        refs.iter().filter(|(_, (rule, _))| !content.contains(&format!("xccdf_org.ssgproject.content_rule_{rule}\""))).collect();
    assert!(outside.len() >= 50, "{} controls outside the Debian content", outside.len());
    let audit: Vec<BTreeMap<String, String>> =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("tests/fixtures/openscap/audit.yaml")).unwrap()).unwrap();
    let mut listed = BTreeMap::new();
    for e in &audit {
        let id = &e["control"];
        assert!(listed.insert(id.clone(), e).is_none(), "{id} is listed twice");
        let Some((rule, partial)) = outside.get(id) else {
            panic!("{id}: listed, but its SSG rule is in the Debian content or it names none")
        };
        assert_eq!(&e["rule"], rule, "{id}: the audit names another rule");
        assert!(["same", "partial", "fixed"].contains(&e["verdict"].as_str()), "{id}: verdict {}", e["verdict"]);
        assert_eq!(e["verdict"] == "partial", partial.is_some(), "{id}: partial in the audit exactly where the pack says ssg_partial");
        assert!(!e["ssg_checks"].is_empty() && (e["verdict"] == "same" || e.get("note").is_some_and(|n| !n.is_empty())), "{id}: say how");
    }
    let missing: Vec<&&String> = outside.keys().filter(|id| !listed.contains_key(**id)).collect();
    assert!(missing.is_empty(), "not audited: {missing:?}");
    let counts = |v: &str| audit.iter().filter(|e| e["verdict"] == v).count();
    println!(
        "SSG-referenced controls outside the Debian content: {} audited ({} same, {} fixed, {} partial)",
        audit.len(),
        counts("same"),
        counts("fixed"),
        counts("partial")
    );
}
