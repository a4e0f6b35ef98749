//! `kernel.*`: sysctl settings, both as the running kernel has them
//! (`/proc/sys`) and as the configuration would set them at boot, and
//! kernel modules disabled through modprobe.d.
//!
//! Configured sysctls follow systemd-sysctl's precedence (sysctl.d(5)):
//! files named alike in `/etc/sysctl.d` beat `/run/sysctl.d` beat
//! `/usr/local/lib/sysctl.d` beat `/usr/lib/sysctl.d` beat `/lib/sysctl.d`;
//! all files are applied in lexical order of their names, later settings
//! winning; `/etc/sysctl.conf` is applied last.
//!
//! Facts: `kernel.sysctl["<key>"].{configured, source, running}` (integers
//! where the value is one), for every configured key and the keys in
//! [`WATCHED_SYSCTLS`]; `kernel.modules_disabled` (install → /bin/true or
//! /bin/false), `kernel.modules_blacklisted`, `kernel.modules_loaded`
//! (from `/proc/modules`, when present).

use std::collections::BTreeMap;

use driftwatch_schemas::{FactPath, FactValue};

use super::Facts;
use crate::root::HostRoot;

const SYSCTL_DIRS: [&str; 5] = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d"];
const MODPROBE_DIRS: [&str; 4] = ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d"];

/// Security-relevant sysctls always reported as running, configured or not.
pub const WATCHED_SYSCTLS: &[&str] = &[
    "fs.protected_hardlinks",
    "fs.protected_symlinks",
    "fs.suid_dumpable",
    "kernel.dmesg_restrict",
    "kernel.kptr_restrict",
    "kernel.randomize_va_space",
    "kernel.yama.ptrace_scope",
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv4.conf.all.accept_source_route",
    "net.ipv4.conf.all.log_martians",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.all.secure_redirects",
    "net.ipv4.conf.all.send_redirects",
    "net.ipv4.conf.default.accept_redirects",
    "net.ipv4.conf.default.accept_source_route",
    "net.ipv4.conf.default.send_redirects",
    "net.ipv4.icmp_echo_ignore_broadcasts",
    "net.ipv4.icmp_ignore_bogus_error_responses",
    "net.ipv4.ip_forward",
    "net.ipv4.tcp_syncookies",
    "net.ipv6.conf.all.accept_ra",
    "net.ipv6.conf.all.accept_redirects",
    "net.ipv6.conf.all.forwarding",
];

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let configured = configured_sysctls(root, facts);
    let base = FactPath::new(["kernel", "sysctl"]);
    let live = matches!(root.metadata("/proc/sys/kernel"), Ok(Some(_)));
    let mut keys: Vec<&str> = WATCHED_SYSCTLS.to_vec();
    keys.extend(configured.keys().map(String::as_str));
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let p = base.child(key);
        if let Some((value, source)) = configured.get(key) {
            facts.set(&p.child("configured"), typed(value));
            facts.set(&p.child("source"), source.as_str());
        }
        if live {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            if let Some(v) = read_proc(root, &path) {
                facts.set(&p.child("running"), typed(&normalise(&v)));
            }
        }
    }
    modules(root, facts);
}

/// Reads a `/proc` file under the root. Not through `HostRoot`'s tracked
/// reads: `/proc` changes without file events, so watching it is useless;
/// the periodic full snapshot refreshes these values.
fn read_proc(root: &HostRoot, path: &str) -> Option<String> {
    std::fs::read_to_string(root.path(path)).ok()
}

fn normalise(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn typed(v: &str) -> FactValue {
    v.parse::<i64>().map(FactValue::Int).unwrap_or_else(|_| FactValue::Str(v.to_string()))
}

/// key → (value, file that set it).
pub fn configured_sysctls(root: &HostRoot, facts: &mut Facts) -> BTreeMap<String, (String, String)> {
    // File name → the path that wins for it.
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for dir in SYSCTL_DIRS {
        for path in root.glob(&format!("{dir}/*.conf")) {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            files.entry(name).or_insert(path);
        }
    }
    let mut order: Vec<String> = files.into_values().collect();
    order.push("/etc/sysctl.conf".into());
    let mut out = BTreeMap::new();
    for path in order {
        let text = match root.read_to_string(&path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                facts.error("kernel", format!("{path}: {e}"));
                continue;
            }
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let key = k.trim().trim_start_matches('-').replace('/', ".");
            out.insert(key, (normalise(v), path.clone()));
        }
    }
    out
}

fn modules(root: &HostRoot, facts: &mut Facts) {
    let mut disabled = Vec::new();
    let mut blacklisted = Vec::new();
    for dir in MODPROBE_DIRS {
        for path in root.glob(&format!("{dir}/*.conf")) {
            let Ok(Some(text)) = root.read_to_string(&path) else { continue };
            for line in text.lines() {
                let words: Vec<&str> = line.split('#').next().unwrap_or("").split_whitespace().collect();
                match words.as_slice() {
                    ["install", m, cmd, ..] if cmd.ends_with("/true") || cmd.ends_with("/false") => disabled.push(m.replace('-', "_")),
                    ["blacklist", m, ..] => blacklisted.push(m.replace('-', "_")),
                    _ => {}
                }
            }
        }
    }
    for l in [&mut disabled, &mut blacklisted] {
        l.sort();
        l.dedup();
    }
    facts.set(&FactPath::new(["kernel", "modules_disabled"]), disabled);
    facts.set(&FactPath::new(["kernel", "modules_blacklisted"]), blacklisted);
    if let Some(text) = read_proc(root, "/proc/modules") {
        let mut loaded: Vec<String> = text.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
        loaded.sort();
        facts.set(&FactPath::new(["kernel", "modules_loaded"]), loaded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: &[(&str, &str)]) -> Facts {
        crate::facts::testing::collect_with(files, collect)
    }

    #[test]
    fn systemd_sysctl_precedence() {
        let f = facts(&[
            ("/usr/lib/sysctl.d/50-default.conf", "net.ipv4.ip_forward = 1\nkernel.kptr_restrict=0\n"),
            ("/etc/sysctl.d/50-default.conf", "# masks the vendor file of the same name\nkernel.dmesg_restrict = 1\n"),
            ("/usr/lib/sysctl.d/60-x.conf", "net/ipv4/tcp_syncookies = 1\n-net.ipv4.conf.all.rp_filter = 2\n"),
            ("/etc/sysctl.d/70-late.conf", "net.ipv4.tcp_syncookies=0\nvm.swappiness = 10\n"),
            ("/etc/sysctl.conf", "vm.swappiness=1\n"),
            ("/proc/sys/kernel/dmesg_restrict", "0\n"),
            ("/proc/sys/net/ipv4/ip_forward", "0\n"),
        ]);
        let get = |k: &str| f.0.get(k).cloned();
        assert_eq!(get(r#"kernel.sysctl["net.ipv4.ip_forward"].configured"#), None, "/etc file masks the vendor one");
        assert_eq!(get(r#"kernel.sysctl["kernel.dmesg_restrict"].configured"#), Some(FactValue::Int(1)));
        assert_eq!(get(r#"kernel.sysctl["kernel.dmesg_restrict"].running"#), Some(FactValue::Int(0)));
        assert_eq!(get(r#"kernel.sysctl["net.ipv4.ip_forward"].running"#), Some(FactValue::Int(0)));
        assert_eq!(get(r#"kernel.sysctl["net.ipv4.tcp_syncookies"].configured"#), Some(FactValue::Int(0)));
        assert_eq!(get(r#"kernel.sysctl["net.ipv4.tcp_syncookies"].source"#), Some("/etc/sysctl.d/70-late.conf".into()));
        assert_eq!(get(r#"kernel.sysctl["net.ipv4.conf.all.rp_filter"].configured"#), Some(FactValue::Int(2)));
        assert_eq!(get(r#"kernel.sysctl["vm.swappiness"].source"#), Some("/etc/sysctl.conf".into()));
    }

    #[test]
    fn modprobe_disabled_and_blacklisted() {
        let f = facts(&[
            ("/etc/modprobe.d/cis.conf", "install cramfs /bin/false\ninstall usb-storage /bin/true\nblacklist cramfs # too\ninstall nfs /sbin/modprobe --ignore-install nfs\n"),
            ("/proc/modules", "ext4 1 0 - Live 0x0\nusb_storage 2 0 - Live 0x0\n"),
        ]);
        assert_eq!(f.0["kernel.modules_disabled"], FactValue::List(vec!["cramfs".into(), "usb_storage".into()]));
        assert_eq!(f.0["kernel.modules_blacklisted"], FactValue::List(vec!["cramfs".into()]));
        assert_eq!(f.0["kernel.modules_loaded"], FactValue::List(vec!["ext4".into(), "usb_storage".into()]));
    }
}
