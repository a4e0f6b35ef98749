//! `logging.*`: is the host keeping records? auditd (installed, enabled,
//! rules, auditd.conf), rsyslog and syslog-ng, journald storage, and
//! logrotate.
//!
//! Facts:
//! - `logging.auditd.{installed, enabled, rules, rule_count, immutable}`
//!   and `logging.auditd.conf.<key>` (auditd.conf, keys lower-cased);
//! - `logging.rsyslog.{installed, enabled}`, `logging.syslog_ng.{installed, enabled}`;
//! - `logging.journald.{storage, compress, forward_to_syslog}` (journald.conf
//!   and its `.d` drop-ins, later files winning; systemd defaults);
//! - `logging.logrotate.{installed, scheduled}`.

use driftwatch_schemas::FactPath;

use super::{Facts, Installed};
use crate::root::HostRoot;

pub fn collect(root: &HostRoot, inst: &Installed, facts: &mut Facts) {
    let l = FactPath::new(["logging"]);
    let a = l.child("auditd");
    facts.set(&a.child("installed"), inst.has(root, "auditd", &["/sbin/auditd", "/usr/sbin/auditd"]));
    facts.set(&a.child("enabled"), inst.enabled(&["auditd.service"]));
    let mut rules = Vec::new();
    let files: Vec<String> = std::iter::once("/etc/audit/audit.rules".to_string()).chain(root.glob("/etc/audit/rules.d/*.rules")).collect();
    for f in &files {
        if let Ok(Some(t)) = root.read_to_string(f) {
            rules.extend(t.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        }
    }
    rules.dedup();
    facts.set(&a.child("immutable"), rules.iter().any(|r| r.split_whitespace().collect::<Vec<_>>() == ["-e", "2"]));
    facts.set(&a.child("rule_count"), rules.len() as i64);
    facts.set(&a.child("rules"), rules);
    if let Ok(Some(t)) = root.read_to_string("/etc/audit/auditd.conf") {
        for (k, v) in key_values(&t) {
            facts.set(&a.child("conf").child(k.to_ascii_lowercase()), v);
        }
    }
    for (key, pkg, bins, units) in [
        ("rsyslog", "rsyslog", &["/usr/sbin/rsyslogd"][..], &["rsyslog.service"][..]),
        ("syslog_ng", "syslog-ng-core", &["/usr/sbin/syslog-ng"][..], &["syslog-ng.service"][..]),
    ] {
        facts.set(&l.child(key).child("installed"), inst.has(root, pkg, bins));
        facts.set(&l.child(key).child("enabled"), inst.enabled(units));
    }
    journald(root, &l.child("journald"), facts);
    let lr = l.child("logrotate");
    facts.set(&lr.child("installed"), inst.has(root, "logrotate", &["/usr/sbin/logrotate"]));
    let scheduled = inst.enabled(&["logrotate.timer"]) || matches!(root.metadata("/etc/cron.daily/logrotate"), Ok(Some(_)));
    facts.set(&lr.child("scheduled"), scheduled);
}

fn journald(root: &HostRoot, base: &FactPath, facts: &mut Facts) {
    // systemd defaults (journald.conf(5)).
    let mut storage = "auto".to_string();
    let mut compress = "yes".to_string();
    let mut forward = "no".to_string();
    let files: Vec<String> = ["/usr/lib/systemd/journald.conf", "/etc/systemd/journald.conf"]
        .iter()
        .map(|s| s.to_string())
        .chain(root.glob("/usr/lib/systemd/journald.conf.d/*.conf"))
        .chain(root.glob("/etc/systemd/journald.conf.d/*.conf"))
        .collect();
    for f in files {
        let Ok(Some(t)) = root.read_to_string(&f) else { continue };
        let mut in_journal = false;
        for line in t.lines().map(str::trim) {
            if line.starts_with('[') {
                in_journal = line == "[Journal]";
                continue;
            }
            if !in_journal {
                continue;
            }
            match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("Storage", v)) => storage = v.to_string(),
                Some(("Compress", v)) => compress = v.to_string(),
                Some(("ForwardToSyslog", v)) => forward = v.to_string(),
                _ => {}
            }
        }
    }
    facts.set(&base.child("storage"), storage);
    facts.set(&base.child("compress"), compress);
    facts.set(&base.child("forward_to_syslog"), forward);
}

/// `key = value` lines, `#` comments.
pub fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;
    use std::collections::BTreeSet;

    #[test]
    fn auditd_journald_logrotate() {
        let packages: BTreeSet<String> = ["auditd".to_string(), "logrotate".to_string()].into();
        let enabled: BTreeSet<String> = ["auditd.service".to_string()].into();
        let f = crate::facts::testing::collect_with(
            &[
                ("/etc/audit/rules.d/50-identity.rules", "-w /etc/passwd -p wa -k identity\n# c\n-w /etc/shadow -p wa -k identity\n"),
                ("/etc/audit/rules.d/99-finalize.rules", "-e 2\n"),
                ("/etc/audit/auditd.conf", "max_log_file = 8\nmax_log_file_action = keep_logs\n"),
                ("/etc/systemd/journald.conf", "[Journal]\n#Storage=auto\nCompress=yes\n"),
                ("/etc/systemd/journald.conf.d/10-persist.conf", "[Journal]\nStorage=persistent\nForwardToSyslog=yes\n"),
                ("/etc/cron.daily/logrotate", "#!/bin/sh\n"),
            ],
            |root, facts| collect(root, &Installed { packages: &packages, enabled: &enabled }, facts),
        );
        assert_eq!(f.0["logging.auditd.installed"], FactValue::Bool(true));
        assert_eq!(f.0["logging.auditd.enabled"], FactValue::Bool(true));
        assert_eq!(f.0["logging.auditd.rule_count"], FactValue::Int(3));
        assert_eq!(f.0["logging.auditd.immutable"], FactValue::Bool(true));
        assert_eq!(f.0["logging.auditd.conf.max_log_file_action"], "keep_logs".into());
        assert_eq!(f.0["logging.journald.storage"], "persistent".into());
        assert_eq!(f.0["logging.journald.forward_to_syslog"], "yes".into());
        assert_eq!(f.0["logging.rsyslog.installed"], FactValue::Bool(false));
        assert_eq!(f.0["logging.logrotate.scheduled"], FactValue::Bool(true));
    }
}
