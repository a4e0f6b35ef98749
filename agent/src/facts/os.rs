//! `os.*`: the operating system, from `/etc/os-release` (or
//! `/usr/lib/os-release`), and the host name.

use driftwatch_schemas::FactPath;

use super::Facts;
use crate::root::HostRoot;

const FIELDS: [(&str, &str); 5] =
    [("ID", "id"), ("VERSION_ID", "version_id"), ("NAME", "name"), ("PRETTY_NAME", "pretty_name"), ("VERSION_CODENAME", "codename")];

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let text = match root.read_to_string("/etc/os-release") {
        Ok(Some(t)) => Some(t),
        Ok(None) => root.read_to_string("/usr/lib/os-release").ok().flatten(),
        Err(e) => {
            facts.error("os", format!("/etc/os-release: {e}"));
            None
        }
    };
    if let Some(text) = text {
        for (key, value) in parse_os_release(&text) {
            if let Some((_, name)) = FIELDS.iter().find(|(k, _)| *k == key) {
                facts.set(&FactPath::new(["os", name]), value);
            }
        }
    }
    if let Ok(Some(h)) = root.read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            facts.set(&FactPath::new(["os", "hostname"]), h);
        }
    }
}

/// `KEY=value` lines, values optionally quoted (os-release(5)).
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_quoted_values_and_comments() {
        let v = super::parse_os_release("# c\nID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID='12'\n");
        assert_eq!(v[0], ("ID".into(), "debian".into()));
        assert_eq!(v[1].1, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(v[2].1, "12");
    }
}
