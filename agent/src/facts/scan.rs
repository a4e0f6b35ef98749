//! `files_scan.*`: a bounded walk for world-writable files and directories
//! and set-uid / set-gid programs. It touches many files, so it runs on
//! full snapshots only; a delta carries the last full snapshot's result.
//!
//! The walk stays on the file system where each configured path starts,
//! never follows symlinks, skips `/proc`, `/sys`, `/dev` and `/run`, and
//! stops at `max_files` entries or `max_seconds`; `files_scan.complete`
//! says whether it saw everything.
//!
//! Facts: `files_scan.world_writable` (regular files),
//! `files_scan.world_writable_dirs` (without the sticky bit), `files_scan.suid`,
//! `files_scan.sgid` (host paths, sorted, at most [`MAX_LISTED`] each),
//! `files_scan.scanned`, `files_scan.complete`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use driftwatch_schemas::FactPath;

use super::config::ScanConfig;
use super::Facts;
use crate::root::HostRoot;

/// Entries listed per fact at most; the count is still exact in `scanned`.
pub const MAX_LISTED: usize = 500;
const SKIP: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

#[derive(Default)]
struct Found {
    world_writable: Vec<String>,
    world_writable_dirs: Vec<String>,
    suid: Vec<String>,
    sgid: Vec<String>,
    scanned: i64,
    complete: bool,
}

pub fn collect(root: &HostRoot, cfg: &ScanConfig, facts: &mut Facts) {
    let deadline = Instant::now() + Duration::from_secs(cfg.max_seconds);
    let mut found = Found { complete: true, ..Found::default() };
    for start in &cfg.paths {
        let real = root.path(start);
        let Ok(meta) = std::fs::symlink_metadata(&real) else { continue };
        // Merged /usr: /bin -> usr/bin is walked under /usr, not twice.
        if !meta.is_dir() {
            continue;
        }
        walk(root, &real, meta.dev(), cfg.max_files, deadline, &mut found);
    }
    let base = FactPath::new(["files_scan"]);
    for (name, mut list) in [
        ("world_writable", found.world_writable),
        ("world_writable_dirs", found.world_writable_dirs),
        ("suid", found.suid),
        ("sgid", found.sgid),
    ] {
        list.sort();
        list.truncate(MAX_LISTED);
        facts.set(&base.child(name), list);
    }
    facts.set(&base.child("scanned"), found.scanned);
    facts.set(&base.child("complete"), found.complete);
}

fn walk(root: &HostRoot, dir: &Path, dev: u64, max: u64, deadline: Instant, found: &mut Found) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if found.scanned as u64 >= max || Instant::now() >= deadline {
            found.complete = false;
            return;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue }; // does not follow symlinks
        found.scanned += 1;
        let host = match path.strip_prefix(root.root()) {
            Ok(r) => format!("/{}", r.to_string_lossy()),
            Err(_) => continue,
        };
        let mode = meta.mode();
        if meta.is_dir() {
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                found.world_writable_dirs.push(host.clone());
            }
            if meta.dev() == dev && !SKIP.contains(&host.as_str()) {
                walk(root, &path, dev, max, deadline, found);
            }
        } else if meta.is_file() {
            if mode & 0o002 != 0 {
                found.world_writable.push(host.clone());
            }
            if mode & 0o4000 != 0 {
                found.suid.push(host.clone());
            }
            if mode & 0o2000 != 0 {
                found.sgid.push(host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_schemas::FactValue;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn finds_writable_and_setuid_within_bounds() {
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s);
        std::fs::create_dir_all(p("usr/bin")).unwrap();
        std::fs::create_dir_all(p("tmp/open")).unwrap();
        for (f, mode) in [("usr/bin/passwd", 0o4755), ("usr/bin/wall", 0o2755), ("usr/bin/ls", 0o755), ("tmp/notes", 0o666)] {
            std::fs::write(p(f), "").unwrap();
            std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(p("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(p("tmp/open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink("/etc", p("usr/bin/loop")).unwrap();
        std::os::unix::fs::symlink("usr/bin", p("bin")).unwrap();
        let root = HostRoot::new(d.path());
        let cfg = ScanConfig { paths: vec!["/bin".into(), "/usr".into(), "/tmp".into()], max_files: 1000, max_seconds: 10 };
        let mut f = Facts::default();
        collect(&root, &cfg, &mut f);
        assert_eq!(f.0["files_scan.suid"], FactValue::List(vec!["/usr/bin/passwd".into()]));
        assert_eq!(f.0["files_scan.sgid"], FactValue::List(vec!["/usr/bin/wall".into()]));
        assert_eq!(f.0["files_scan.world_writable"], FactValue::List(vec!["/tmp/notes".into()]));
        assert_eq!(f.0["files_scan.world_writable_dirs"], FactValue::List(vec!["/tmp/open".into()]), "sticky /tmp itself is fine");
        assert_eq!(f.0["files_scan.complete"], FactValue::Bool(true));

        let small = ScanConfig { max_files: 2, ..cfg };
        let mut g = Facts::default();
        collect(&root, &small, &mut g);
        assert_eq!(g.0["files_scan.complete"], FactValue::Bool(false));
        assert_eq!(g.0["files_scan.scanned"], FactValue::Int(2));
    }
}
