//! `mounts.*`: file systems as configured (`/etc/fstab`) and, when the
//! root has a `/proc`, as mounted (`/proc/1/mounts`, else `/proc/mounts`).
//!
//! Facts, for each mount point in both tables:
//! `mounts.fstab["<point>"].{device, type, options}` and
//! `mounts.live["<point>"].{device, type, options}` (options as a list), and
//! `mounts.separate`: which of [`WATCHED`] are their own file system
//! (live when known, else per fstab).

use std::collections::BTreeMap;

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

/// Mount points that hardening guides want on separate partitions.
pub const WATCHED: &[&str] = &["/tmp", "/var", "/var/tmp", "/var/log", "/var/log/audit", "/home", "/dev/shm"];

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub point: String,
    pub fstype: String,
    pub options: Vec<String>,
}

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let fstab = match root.read_to_string("/etc/fstab") {
        Ok(t) => t.map(|t| parse(&t)).unwrap_or_default(),
        Err(e) => {
            facts.error("mounts", format!("/etc/fstab: {e}"));
            Vec::new()
        }
    };
    // /proc is not watched (it has no file events); the periodic full
    // snapshot refreshes it.
    let live = ["/proc/1/mounts", "/proc/mounts"].iter().find_map(|p| std::fs::read_to_string(root.path(p)).ok()).map(|t| parse(&t));
    emit(facts, "fstab", &fstab);
    if let Some(live) = &live {
        emit(facts, "live", live);
    }
    let table = live.as_ref().unwrap_or(&fstab);
    let separate: Vec<String> = WATCHED.iter().filter(|w| table.iter().any(|m| m.point == **w)).map(|w| w.to_string()).collect();
    facts.set(&FactPath::new(["mounts", "separate"]), separate);
}

fn emit(facts: &mut Facts, table: &str, mounts: &[Mount]) {
    // The last mount on a point is the one in effect.
    let by_point: BTreeMap<&str, &Mount> = mounts.iter().map(|m| (m.point.as_str(), m)).collect();
    for (point, m) in by_point {
        let p = FactPath::new(["mounts", table, point]);
        facts.set(&p.child("device"), m.device.as_str());
        facts.set(&p.child("type"), m.fstype.as_str());
        facts.set(&p.child("options"), m.options.clone());
    }
}

/// fstab(5) / proc mounts lines; octal escapes (`\040`) decoded.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[2] == "swap" {
                return None;
            }
            Some(Mount {
                device: unescape(f[0]),
                point: unescape(f[1]),
                fstype: f[2].to_string(),
                options: f[3].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;

    #[test]
    fn fstab_and_live_tables() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::create_dir_all(d.path().join("proc/1")).unwrap();
        std::fs::write(d.path().join("etc/fstab"), "# <fs> <mp>\nUUID=1 / ext4 errors=remount-ro 0 1\nUUID=2 none swap sw 0 0\ntmpfs /tmp tmpfs defaults,nodev,nosuid,noexec 0 0\n/dev/sdb1 /mnt/my\\040disk ext4 defaults 0 2\n").unwrap();
        std::fs::write(d.path().join("proc/1/mounts"), "/dev/vda / ext4 rw,relatime 0 0\ntmpfs /var/log tmpfs rw,nosuid 0 0\n").unwrap();
        let mut f = Facts::default();
        collect(&HostRoot::new(d.path()), &mut f);
        assert_eq!(
            f.0[r#"mounts.fstab["/tmp"].options"#],
            FactValue::List(vec!["defaults".into(), "nodev".into(), "nosuid".into(), "noexec".into()])
        );
        assert_eq!(f.0[r#"mounts.fstab["/mnt/my disk"].type"#], "ext4".into());
        assert!(!f.0.keys().any(|k| k.contains("none")), "swap skipped");
        assert_eq!(f.0["mounts.separate"], FactValue::List(vec!["/var/log".into()]), "live table wins");
    }
}
