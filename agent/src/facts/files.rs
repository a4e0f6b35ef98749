//! `files["<path>"].*`: owner, group and mode of sensitive files, with
//! owner and group names resolved from the host's own `/etc/passwd` and
//! `/etc/group` (not the agent's, which may be a container's).
//!
//! Facts per file: `exists`, and when it exists `mode` (octal string such
//! as "0640"), `uid`, `gid`, `owner`, `group`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

/// Files inspected when the configuration names none (globs allowed).
pub const DEFAULT_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/passwd-",
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/group",
    "/etc/group-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/sshd_config",
    "/etc/sudoers",
    "/etc/crontab",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/cron.d",
    "/etc/cron.allow",
    "/etc/at.allow",
    "/boot/grub/grub.cfg",
    "/boot/System.map-*",
    "/etc/issue",
    "/etc/issue.net",
    "/etc/motd",
    "/var/log",
];

pub fn collect(root: &HostRoot, patterns: &[String], facts: &mut Facts) {
    let users = id_names(root, "/etc/passwd");
    let groups = id_names(root, "/etc/group");
    // A glob names every match (and nothing when none matches).
    let paths: Vec<String> =
        patterns.iter().flat_map(|p| if p.contains(['*', '?', '[']) { root.glob(p) } else { vec![p.clone()] }).collect();
    for p in &paths {
        let base = FactPath::new(["files", p.as_str()]);
        match root.metadata(p) {
            Ok(None) => facts.set(&base.child("exists"), false),
            Err(e) => facts.error("files", format!("{p}: {e}")),
            Ok(Some(m)) => {
                facts.set(&base.child("exists"), true);
                facts.set(&base.child("mode"), format!("{:04o}", m.mode() & 0o7777));
                facts.set(&base.child("uid"), i64::from(m.uid()));
                facts.set(&base.child("gid"), i64::from(m.gid()));
                if let Some(n) = users.get(&m.uid()) {
                    facts.set(&base.child("owner"), n.as_str());
                }
                if let Some(n) = groups.get(&m.gid()) {
                    facts.set(&base.child("group"), n.as_str());
                }
            }
        }
    }
}

/// id → name from a passwd- or group-format file (name:x:id:...).
fn id_names(root: &HostRoot, path: &str) -> HashMap<u32, String> {
    let Ok(Some(text)) = root.read_to_string(path) else { return HashMap::new() };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (id, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn modes_owners_and_missing_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        let uid = std::fs::metadata(d.path()).unwrap().uid();
        std::fs::write(d.path().join("etc/passwd"), format!("me:x:{uid}:{uid}::/:/bin/sh\n")).unwrap();
        std::fs::write(d.path().join("etc/shadow"), "").unwrap();
        std::fs::set_permissions(d.path().join("etc/shadow"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = HostRoot::new(d.path());
        let mut f = Facts::default();
        collect(&r, &["/etc/shadow".into(), "/etc/gshadow".into()], &mut f);
        assert_eq!(f.0[r#"files["/etc/shadow"].mode"#], "0644".into());
        assert_eq!(f.0[r#"files["/etc/shadow"].owner"#], "me".into());
        assert_eq!(f.0[r#"files["/etc/gshadow"].exists"#], false.into());
        assert!(!f.0.contains_key(r#"files["/etc/gshadow"].mode"#));
    }
}
