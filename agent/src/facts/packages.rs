//! `packages.*`: installed packages from dpkg's status database.
//!
//! Facts: `packages.manager` (`dpkg` when its database exists),
//! `packages.installed` (names whose status is `install ok installed`),
//! `packages.version["<name>"]`, `packages.half_installed` (names in any
//! other state but `not-installed` / `config-files`).
//!
//! On rpm hosts, the SQLite rpm database (RPM ≥ 4.16, see `rpm.rs`) gives
//! `packages.installed` and `packages.version`; the older Berkeley DB
//! format is reported in `packages.errors`.

use std::collections::BTreeSet;

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Returns the installed package names, for families that depend on them.
pub fn collect(root: &HostRoot, facts: &mut Facts) -> BTreeSet<String> {
    let base = FactPath::new(["packages"]);
    let mut names = BTreeSet::new();
    match root.read_to_string(DPKG_STATUS) {
        Ok(Some(text)) => {
            let pkgs = parse_dpkg_status(&text);
            facts.set(&base.child("manager"), "dpkg");
            let mut installed = Vec::new();
            let mut half = Vec::new();
            for p in &pkgs {
                match p.status.as_str() {
                    "install ok installed" | "hold ok installed" => {
                        installed.push(p.name.clone());
                        facts.set(&base.child("version").child(p.name.as_str()), p.version.as_str());
                    }
                    s if s.ends_with("not-installed") || s.ends_with("config-files") => {}
                    _ => half.push(p.name.clone()),
                }
            }
            installed.sort();
            installed.dedup();
            names.extend(installed.iter().cloned());
            facts.set(&base.child("installed"), installed);
            facts.set(&base.child("half_installed"), half);
        }
        Ok(None) => {
            for db in ["/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite"] {
                if !matches!(root.metadata(db), Ok(Some(_))) {
                    continue;
                }
                facts.set(&base.child("manager"), "rpm");
                match super::rpm::read_db(&root.path(db)) {
                    Ok(pkgs) => {
                        let mut installed: Vec<String> = pkgs.iter().map(|p| p.name.clone()).collect();
                        for p in &pkgs {
                            facts.set(&base.child("version").child(p.name.as_str()), p.version.as_str());
                        }
                        installed.sort();
                        installed.dedup();
                        names.extend(installed.iter().cloned());
                        facts.set(&base.child("installed"), installed);
                    }
                    Err(e) => facts.error("packages", e),
                }
                return names;
            }
            if matches!(root.metadata("/var/lib/rpm/Packages"), Ok(Some(_))) {
                facts.set(&base.child("manager"), "rpm");
                facts.error("packages", "/var/lib/rpm/Packages: the Berkeley DB rpm database (RPM < 4.16) is not supported".into());
            }
        }
        Err(e) => facts.error("packages", format!("{DPKG_STATUS}: {e}")),
    }
    names
}

/// One stanza of the status file.
#[derive(Debug, Default, PartialEq)]
pub struct Package {
    pub name: String,
    pub status: String,
    pub version: String,
    pub arch: String,
}

/// Parses deb822 stanzas; continuation lines (leading space) are skipped.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut cur = Package::default();
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            if !cur.name.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur = Package::default();
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim().to_string();
        match k {
            "Package" => cur.name = v,
            "Status" => cur.status = v,
            "Version" => cur.version = v,
            "Architecture" => cur.arch = v,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_hosts_read_the_sqlite_database() {
        use crate::facts::rpm::tests::{package, write_db};
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/rpm")).unwrap();
        write_db(
            &d.path().join("var/lib/rpm/rpmdb.sqlite"),
            &[package("openssh-server", "8.7p1", "38.el9", None), package("audit", "3.0.7", "104.el9", None)],
        );
        let mut f = Facts::default();
        let names = collect(&HostRoot::new(d.path()), &mut f);
        assert_eq!(f.0["packages.manager"], "rpm".into());
        assert_eq!(f.0["packages.installed"], vec!["audit".to_string(), "openssh-server".to_string()].into());
        assert_eq!(f.0[r#"packages.version["openssh-server"]"#], "8.7p1-38.el9".into());
        assert!(names.contains("audit"));
    }

    #[test]
    fn parses_status_stanzas() {
        let text = "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\nDescription: x\n multi\n line\n\nPackage: telnet\nStatus: deinstall ok config-files\nVersion: 0.17\n\nPackage: broken\nStatus: install reinstreq half-installed\nVersion: 1\n";
        let p = parse_dpkg_status(text);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].version, "1:9.2p1-2+deb12u3");
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(d.path().join("var/lib/dpkg/status"), text).unwrap();
        let mut f = Facts::default();
        let _ = collect(&HostRoot::new(d.path()), &mut f);
        assert_eq!(f.0["packages.installed"], vec!["openssh-server".to_string()].into());
        assert_eq!(f.0[r#"packages.version["openssh-server"]"#], "1:9.2p1-2+deb12u3".into());
        assert_eq!(f.0["packages.half_installed"], vec!["broken".to_string()].into());
    }
}
