//! `services.*`: systemd units and whether they are enabled or masked,
//! read from unit files and links under the root (no D-Bus, so it works on
//! a mounted node filesystem and in fixtures).
//!
//! A unit is *enabled* when a link to it sits in a `*.wants` or
//! `*.requires` directory of `/etc/systemd/system` (what `systemctl enable`
//! makes) or of the vendor directories (units enabled by the distribution);
//! *masked* when `/etc/systemd/system/<unit>` (or `/run/…`) links to
//! `/dev/null` or is empty.
//!
//! Facts: `services.installed`, `services.enabled`, `services.disabled`
//! (installed, neither enabled nor masked), `services.masked` (unit names,
//! sorted), `services.present` (true when systemd unit
//! directories exist at all).

use std::collections::BTreeSet;

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

const ADMIN_DIRS: [&str; 2] = ["/etc/systemd/system", "/run/systemd/system"];
const VENDOR_DIRS: [&str; 4] =
    ["/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system", "/run/systemd/generator"];
const UNIT_KINDS: [&str; 5] = ["service", "socket", "timer", "target", "mount"];

/// Returns the enabled unit names, for families that depend on them.
pub fn collect(root: &HostRoot, facts: &mut Facts) -> BTreeSet<String> {
    let dirs: Vec<&str> = ADMIN_DIRS.iter().chain(VENDOR_DIRS.iter()).copied().collect();
    let present = dirs.iter().any(|d| matches!(root.metadata(d), Ok(Some(m)) if m.is_dir()));
    facts.set(&FactPath::new(["services", "present"]), present);
    if !present {
        return BTreeSet::new();
    }
    let mut installed = BTreeSet::new();
    let mut masked = BTreeSet::new();
    let mut enabled = BTreeSet::new();
    for dir in &dirs {
        for kind in UNIT_KINDS {
            for path in root.glob(&format!("{dir}/*.{kind}")) {
                let name = path.rsplit('/').next().unwrap_or_default().to_string();
                let real = root.path(&path);
                let is_masked = ADMIN_DIRS.contains(dir)
                    && (std::fs::read_link(&real).is_ok_and(|t| t == std::path::Path::new("/dev/null"))
                        || std::fs::symlink_metadata(&real).is_ok_and(|m| m.is_file() && m.len() == 0));
                if is_masked {
                    masked.insert(name);
                } else {
                    installed.insert(name);
                }
            }
        }
        for wants in root.glob(&format!("{dir}/*.wants")).into_iter().chain(root.glob(&format!("{dir}/*.requires"))) {
            for link in root.glob(&format!("{wants}/*")) {
                enabled.insert(link.rsplit('/').next().unwrap_or_default().to_string());
            }
        }
    }
    let enabled: BTreeSet<String> = enabled.difference(&masked).cloned().collect();
    // Installed, neither enabled nor masked (static units included).
    let disabled: Vec<String> = installed.iter().filter(|u| !enabled.contains(*u) && !masked.contains(*u)).cloned().collect();
    let base = FactPath::new(["services"]);
    facts.set(&base.child("disabled"), disabled);
    facts.set(&base.child("installed"), installed.into_iter().collect::<Vec<_>>());
    facts.set(&base.child("enabled"), enabled.iter().cloned().collect::<Vec<_>>());
    facts.set(&base.child("masked"), masked.into_iter().collect::<Vec<_>>());
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;
    use std::os::unix::fs::symlink;

    #[test]
    fn enabled_masked_installed() {
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s);
        std::fs::create_dir_all(p("lib/systemd/system")).unwrap();
        std::fs::create_dir_all(p("etc/systemd/system/multi-user.target.wants")).unwrap();
        for u in ["ssh.service", "auditd.service", "telnet.socket", "rsync.service"] {
            std::fs::write(p(&format!("lib/systemd/system/{u}")), "[Unit]\n").unwrap();
        }
        symlink("/lib/systemd/system/ssh.service", p("etc/systemd/system/multi-user.target.wants/ssh.service")).unwrap();
        symlink("/lib/systemd/system/rsync.service", p("etc/systemd/system/multi-user.target.wants/rsync.service")).unwrap();
        symlink("/dev/null", p("etc/systemd/system/rsync.service")).unwrap();
        let mut f = Facts::default();
        let _ = collect(&HostRoot::new(d.path()), &mut f);
        assert_eq!(f.0["services.enabled"], FactValue::List(vec!["ssh.service".into()]));
        assert_eq!(f.0["services.masked"], FactValue::List(vec!["rsync.service".into()]));
        assert_eq!(f.0["services.disabled"], FactValue::List(vec!["auditd.service".into(), "telnet.socket".into()]));
        assert_eq!(
            f.0["services.installed"],
            FactValue::List(vec!["auditd.service".into(), "rsync.service".into(), "ssh.service".into(), "telnet.socket".into()])
        );
    }
}
