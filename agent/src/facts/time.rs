//! `time.*`: time synchronisation. Facts: `time.sync.installed` and
//! `time.sync.enabled` (which of chrony, ntp, ntpsec, systemd-timesyncd),
//! `time.sync.active` (any installed and enabled), `time.chrony.sources`
//! (`server` / `pool` lines of chrony.conf and its `.d` drop-ins).

use driftwatch_schemas::FactPath;

use super::{Facts, Installed};
use crate::root::HostRoot;

/// (name, package, binaries, units)
const DAEMONS: &[(&str, &str, &[&str], &[&str])] = &[
    ("chrony", "chrony", &["/usr/sbin/chronyd"], &["chrony.service", "chronyd.service"]),
    ("ntp", "ntp", &["/usr/sbin/ntpd"], &["ntp.service", "ntpd.service"]),
    ("ntpsec", "ntpsec", &["/usr/sbin/ntpd"], &["ntpsec.service"]),
    (
        "systemd-timesyncd",
        "systemd-timesyncd",
        &["/lib/systemd/systemd-timesyncd", "/usr/lib/systemd/systemd-timesyncd"],
        &["systemd-timesyncd.service"],
    ),
];

pub fn collect(root: &HostRoot, inst: &Installed, facts: &mut Facts) {
    let base = FactPath::new(["time", "sync"]);
    let installed: Vec<String> = DAEMONS.iter().filter(|(_, p, b, _)| inst.has(root, p, b)).map(|d| d.0.to_string()).collect();
    let enabled: Vec<String> = DAEMONS.iter().filter(|(_, _, _, u)| inst.enabled(u)).map(|d| d.0.to_string()).collect();
    facts.set(&base.child("active"), installed.iter().any(|i| enabled.contains(i)));
    facts.set(&base.child("installed"), installed);
    facts.set(&base.child("enabled"), enabled);
    let files: Vec<String> = ["/etc/chrony/chrony.conf", "/etc/chrony.conf"]
        .iter()
        .map(|s| s.to_string())
        .chain(root.glob("/etc/chrony/conf.d/*.conf"))
        .chain(root.glob("/etc/chrony/sources.d/*.sources"))
        .collect();
    let mut sources = Vec::new();
    for f in files {
        if let Ok(Some(t)) = root.read_to_string(&f) {
            sources.extend(
                t.lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("server ") || l.starts_with("pool "))
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
            );
        }
    }
    if !sources.is_empty() {
        facts.set(&FactPath::new(["time", "chrony", "sources"]), sources);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;
    use std::collections::BTreeSet;

    #[test]
    fn chrony_installed_enabled_with_sources() {
        let packages: BTreeSet<String> = ["chrony".to_string()].into();
        let enabled: BTreeSet<String> = ["chrony.service".to_string()].into();
        let f = crate::facts::testing::collect_with(
            &[("/etc/chrony/chrony.conf", "# c\npool 2.debian.pool.ntp.org iburst\nserver  time.example.org\n")],
            |r, f| collect(r, &Installed { packages: &packages, enabled: &enabled }, f),
        );
        assert_eq!(f.0["time.sync.active"], FactValue::Bool(true));
        assert_eq!(f.0["time.sync.installed"], FactValue::List(vec!["chrony".into()]));
        assert_eq!(
            f.0["time.chrony.sources"],
            FactValue::List(vec!["pool 2.debian.pool.ntp.org iburst".into(), "server time.example.org".into()])
        );
    }
}
