//! Where the policy packs come from when the configuration does not say.
//!
//! `policies` defaults to `policies`, which exists only in a checkout. A
//! packaged collector started anywhere else finds its packs, in order:
//! 1. `./policies` (a checkout, or an operator's own folder of that name);
//! 2. installed beside the binary: `<bin>/../share/driftwatch/policies`
//!    (a package's layout), then `<bin>/policies` (an unpacked archive);
//! 3. the packs embedded in the binary at build time (`build.rs`),
//!    unpacked once into a folder named by their content under the user's
//!    cache (`$XDG_CACHE_HOME`, `~/.cache`, else the temporary folder).
//!
//! A `policies` set to anything else (configuration, environment,
//! `--policies`) is taken as is. Each start says which it used.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundled_policies.rs"));

/// The default value of the `policies` setting.
pub const DEFAULT_DIR: &str = "policies";

/// Where the packs in use were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configured folder (or `./policies`).
    Configured,
    /// Installed beside the binary.
    Installed,
    /// Embedded in the binary, unpacked.
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Configured => "configured",
            Origin::Installed => "installed beside the binary",
            Origin::Embedded => "embedded in the binary",
        })
    }
}

/// The folder of packs to use for the `policies` setting `configured`, and
/// where it came from.
pub fn locate(configured: &Path) -> std::io::Result<(PathBuf, Origin)> {
    if configured != Path::new(DEFAULT_DIR) || configured.is_dir() {
        return Ok((configured.to_path_buf(), Origin::Configured));
    }
    if let Some(bin_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        for candidate in [bin_dir.join("../share/driftwatch/policies"), bin_dir.join("policies")] {
            if candidate.is_dir() {
                return Ok((candidate, Origin::Installed));
            }
        }
    }
    Ok((unpack(&cache_base())?, Origin::Embedded))
}

fn cache_base() -> PathBuf {
    let from_env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    from_env("XDG_CACHE_HOME")
        .or_else(|| from_env("HOME").map(|h| h.join(".cache")))
        .map(|c| c.join("driftwatch"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("driftwatch-{}", whoami())))
}

fn whoami() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() }.to_string()
    }
    #[cfg(not(unix))]
    {
        "user".to_string()
    }
}

/// The embedded packs' folder under `base`: `policies-<version>-<digest>`,
/// written once (into a private folder, then renamed into place, so a
/// half-written one is never used) and reused while its content matches.
pub fn unpack(base: &Path) -> std::io::Result<PathBuf> {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for (path, text) in FILES {
        digest.update(path.as_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.update([0]);
    }
    let name = format!("policies-{}-{}", env!("CARGO_PKG_VERSION"), &hex::encode(digest.finalize())[..16]);
    let dir = base.join(&name);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(base)?;
    let staging = tempfile::Builder::new().prefix(&format!(".{name}-")).tempdir_in(base)?;
    for (path, text) in FILES {
        let file = staging.path().join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().write(true).create_new(true).open(&file)?.write_all(text.as_bytes())?;
    }
    std::fs::write(staging.path().join(".complete"), b"")?;
    match std::fs::rename(staging.path(), &dir) {
        Ok(()) => {
            // Renamed: the staging folder is gone, nothing to clean up.
            let _ = staging.keep();
            Ok(dir)
        }
        // Another process unpacked the same content first.
        Err(_) if dir.join(".complete").is_file() => Ok(dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_packs_are_embedded_without_their_fixtures() {
        assert!(FILES.iter().any(|(p, _)| *p == "linux/sshd.yaml"), "{:?}", FILES.iter().map(|f| f.0).collect::<Vec<_>>());
        assert!(FILES.iter().all(|(p, _)| !p.contains("fixtures/")));
        assert!(FILES.len() >= 15);
    }

    #[test]
    fn embedded_packs_unpack_once_and_load() {
        let base = tempfile::tempdir().unwrap();
        let dir = unpack(base.path()).unwrap();
        assert!(dir.join("linux/sshd.yaml").is_file());
        let set = crate::policy::load_dir(&dir).unwrap();
        assert!(set.controls.len() > 100);
        // Unpacked again: the same folder, nothing rewritten.
        let marker = std::fs::metadata(dir.join(".complete")).unwrap().modified().unwrap();
        assert_eq!(unpack(base.path()).unwrap(), dir);
        assert_eq!(std::fs::metadata(dir.join(".complete")).unwrap().modified().unwrap(), marker);
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1, "no staging folder left behind");
    }

    #[test]
    fn a_configured_folder_is_taken_as_is() {
        let (dir, origin) = locate(Path::new("/nonexistent/packs")).unwrap();
        assert_eq!((dir, origin), (PathBuf::from("/nonexistent/packs"), Origin::Configured));
    }
}
