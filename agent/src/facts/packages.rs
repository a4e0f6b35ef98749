//! `packages.*`: installed packages from dpkg's status database.
//!
//! Facts: `packages.manager` (`dpkg` when its database exists),
//! `packages.installed` (names whose status is `install ok installed`),
//! `packages.version["<name>"]`, `packages.half_installed` (names in any
//! other state but `not-installed` / `config-files`).
//!
//! The rpm database (SQLite since RPM 4.16) is not read yet: on rpm hosts
//! `packages.manager` is `rpm` and `packages.errors` says so.

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
            if ["/var/lib/rpm/rpmdb.sqlite", "/var/lib/rpm/Packages"].iter().any(|p| matches!(root.metadata(p), Ok(Some(_)))) {
                facts.set(&base.child("manager"), "rpm");
                facts.error("packages", "the rpm database is not read yet; package facts are missing".into());
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
