//! [`HostRoot`]: every host path the agent reads goes through it, so the
//! same code inspects `/`, a DaemonSet's `/host`, a chroot, or a test
//! fixture tree. It also remembers what was read, which is what the change
//! watcher watches.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A host filesystem mounted at `root`. Host paths are absolute
/// (`/etc/ssh/sshd_config`) and resolved under the root.
#[derive(Debug)]
pub struct HostRoot {
    root: PathBuf,
    reads: Mutex<BTreeSet<String>>,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into(), reads: Mutex::new(BTreeSet::new()) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of a host path.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    fn note(&self, host_path: &str) {
        if let Ok(mut r) = self.reads.lock() {
            r.insert(host_path.to_string());
        }
    }

    /// Reads a text file; `Ok(None)` when it does not exist.
    pub fn read_to_string(&self, host_path: &str) -> io::Result<Option<String>> {
        self.note(host_path);
        match std::fs::read(self.path(host_path)) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Metadata (following symlinks); `Ok(None)` when the path does not exist.
    pub fn metadata(&self, host_path: &str) -> io::Result<Option<std::fs::Metadata>> {
        self.note(host_path);
        match std::fs::metadata(self.path(host_path)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Host paths matching a glob pattern of host paths, sorted. The
    /// pattern's directory is remembered, so new matches are noticed.
    pub fn glob(&self, pattern: &str) -> Vec<String> {
        if let Some(dir) = Path::new(pattern).parent() {
            self.note(&dir.to_string_lossy());
        }
        let real = self.path(pattern);
        let Ok(paths) = glob::glob(&real.to_string_lossy()) else { return Vec::new() };
        let mut out: Vec<String> = paths
            .filter_map(Result::ok)
            .filter_map(|p| p.strip_prefix(&self.root).ok().map(|r| format!("/{}", r.to_string_lossy())))
            .collect();
        out.sort();
        out
    }

    /// The host paths read since the last call, and forgets them.
    pub fn take_reads(&self) -> BTreeSet<String> {
        self.reads.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_under_the_root_and_remembers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/x.d")).unwrap();
        std::fs::write(d.path().join("etc/a"), "hi").unwrap();
        std::fs::write(d.path().join("etc/x.d/2.conf"), "").unwrap();
        std::fs::write(d.path().join("etc/x.d/1.conf"), "").unwrap();
        let r = HostRoot::new(d.path());
        assert_eq!(r.read_to_string("/etc/a").unwrap().as_deref(), Some("hi"));
        assert_eq!(r.read_to_string("/etc/missing").unwrap(), None);
        assert_eq!(r.glob("/etc/x.d/*.conf"), vec!["/etc/x.d/1.conf", "/etc/x.d/2.conf"]);
        let reads: Vec<_> = r.take_reads().into_iter().collect();
        assert_eq!(reads, vec!["/etc/a", "/etc/missing", "/etc/x.d"]);
        assert!(r.take_reads().is_empty());
    }
}
