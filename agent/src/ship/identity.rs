//! The agent's own key pair: made at first start, kept in the state
//! directory readable by the agent alone, and used to sign every record it
//! produces (the contract is `driftwatch_schemas::identity`). The collector
//! pins the key to the asset the agent speaks for; a lost key file means a
//! new key, which an operator approves (`driftwatch-collector keys`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use driftwatch_schemas::identity::KeyPair;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "agent.key";

/// The key file of the agent whose state is in `state_dir`.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// Loads the agent's key from `state_dir`, or makes one (mode 0600,
/// created exclusively: two agents starting at once on one state directory
/// keep the same key). A key file others may read is made private again,
/// with a warning: the key is what makes the agent's word its own.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<KeyPair> {
    let path = key_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            tighten(&path)?;
            KeyPair::from_pkcs8(&bytes).with_context(|| format!("{}: delete it to make a new key (to be approved again)", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("reading the agent key {}", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<KeyPair> {
    let pkcs8 = KeyPair::generate_pkcs8()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let tmp = path.with_extension(format!("key.{}", std::process::id()));
    let mut f = options.open(&tmp).with_context(|| format!("creating the agent key {}", tmp.display()))?;
    f.write_all(&pkcs8).and_then(|()| f.sync_all()).with_context(|| format!("writing the agent key {}", tmp.display()))?;
    // A link, not a rename: if another agent made the key meanwhile, its
    // key stays and is the one used.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            let key = KeyPair::from_pkcs8(&pkcs8)?;
            tracing::info!(key = %path.display(), fingerprint = %key.public().fingerprint(), "made the agent's key pair");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path.parent().unwrap_or(Path::new("."))),
        Err(e) => Err(e).with_context(|| format!("creating the agent key {}", path.display())),
    }
}

/// Makes the key file readable by its owner alone.
fn tighten(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(key = %path.display(), mode = format!("{:o}", mode & 0o777), "the agent key was readable by others; made private (0600)");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public(), "the same key after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = key_path(dir.path());
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            load_or_create(dir.path()).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "made private again");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_damaged_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(key_path(dir.path()), b"not a key").unwrap();
        let e = format!("{:#}", load_or_create(dir.path()).unwrap_err());
        assert!(e.contains("agent.key") && e.contains("Ed25519"), "{e}");
    }
}
