//! `apt.*`: where packages come from, and whether apt checks signatures.
//!
//! Facts: `apt.sources` (URIs of one-line `.list` and deb822 `.sources`
//! entries), `apt.unofficial_sources` (URIs not on the distribution's own
//! hosts), `apt.trusted_sources` (entries marked `trusted=yes`, which skip
//! signature checks), `apt.allow_unauthenticated` (any
//! `APT::Get::AllowUnauthenticated "true"` in apt.conf or apt.conf.d).
//! Present only on hosts with `/etc/apt`.

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

/// Hosts of official Debian and Ubuntu archives.
const OFFICIAL: &[&str] = &[
    "deb.debian.org",
    "security.debian.org",
    "ftp.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "ports.ubuntu.com",
    "debian-security",
];

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    if !matches!(root.metadata("/etc/apt"), Ok(Some(m)) if m.is_dir()) {
        return;
    }
    let mut sources = Vec::new();
    let mut trusted = Vec::new();
    let lists = std::iter::once("/etc/apt/sources.list".to_string()).chain(root.glob("/etc/apt/sources.list.d/*.list"));
    for f in lists {
        let Ok(Some(t)) = root.read_to_string(&f) else { continue };
        for line in t.lines().map(|l| l.split('#').next().unwrap_or("").trim()) {
            let mut words = line.split_whitespace();
            if !matches!(words.next(), Some("deb" | "deb-src")) {
                continue;
            }
            let mut rest: Vec<&str> = words.collect();
            let mut opts = String::new();
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                while let Some(w) = rest.first().copied() {
                    opts.push_str(w);
                    opts.push(' ');
                    rest.remove(0);
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            if let Some(uri) = rest.first() {
                sources.push(uri.to_string());
                if opts.contains("trusted=yes") {
                    trusted.push(uri.to_string());
                }
            }
        }
    }
    for f in root.glob("/etc/apt/sources.list.d/*.sources") {
        let Ok(Some(t)) = root.read_to_string(&f) else { continue };
        for stanza in t.split("\n\n") {
            let mut uris = Vec::new();
            let mut is_trusted = false;
            for line in stanza.lines() {
                match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                    Some(("URIs", v)) => uris.extend(v.split_whitespace().map(String::from)),
                    Some(("Trusted", v)) => is_trusted = v.eq_ignore_ascii_case("yes"),
                    _ => {}
                }
            }
            if is_trusted {
                trusted.extend(uris.iter().cloned());
            }
            sources.extend(uris);
        }
    }
    sources.sort();
    sources.dedup();
    let unofficial: Vec<String> = sources.iter().filter(|u| !OFFICIAL.iter().any(|h| host_of(u) == *h)).cloned().collect();
    let mut allow = false;
    for f in std::iter::once("/etc/apt/apt.conf".to_string()).chain(root.glob("/etc/apt/apt.conf.d/*")) {
        let Ok(Some(t)) = root.read_to_string(&f) else { continue };
        let flat: String = t.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join(" ");
        let lower = flat.to_ascii_lowercase();
        if let Some(i) = lower.find("allowunauthenticated") {
            allow |= lower[i..].split(';').next().is_some_and(|v| v.contains("\"true\"") || v.contains("\"1\"") || v.contains(" true"));
        }
    }
    let a = FactPath::new(["apt"]);
    facts.set(&a.child("sources"), sources);
    facts.set(&a.child("unofficial_sources"), unofficial);
    facts.set(&a.child("trusted_sources"), trusted);
    facts.set(&a.child("allow_unauthenticated"), allow);
}

fn host_of(uri: &str) -> &str {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let host = rest.split('/').next().unwrap_or("");
    host.rsplit('@').next().unwrap_or(host).split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    #[test]
    fn one_line_and_deb822_sources() {
        let f = crate::facts::testing::collect_with(
            &[
                ("/etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n# deb http://old/ x\ndeb [trusted=yes arch=amd64] http://repo.example.com/apt stable main\n"),
                ("/etc/apt/sources.list.d/debian.sources", "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: https://pkgs.vendor.io/deb\nTrusted: yes\n"),
                ("/etc/apt/apt.conf.d/99insecure", "APT::Get::AllowUnauthenticated \"true\"; // bad\n"),
            ],
            collect,
        );
        assert_eq!(
            f.0["apt.unofficial_sources"],
            FactValue::List(vec!["http://repo.example.com/apt".into(), "https://pkgs.vendor.io/deb".into()])
        );
        assert_eq!(
            f.0["apt.trusted_sources"],
            FactValue::List(vec!["http://repo.example.com/apt".into(), "https://pkgs.vendor.io/deb".into()])
        );
        assert_eq!(f.0["apt.allow_unauthenticated"], FactValue::Bool(true));
        let FactValue::List(all) = &f.0["apt.sources"] else { panic!() };
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn no_apt_no_facts() {
        assert!(crate::facts::testing::collect_with(&[("/etc/hostname", "x")], collect).0.is_empty());
    }
}
