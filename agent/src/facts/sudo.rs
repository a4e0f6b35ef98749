//! `sudo.*`: sudoers policy, read as sudo reads it (sudoers(5)):
//! `/etc/sudoers`, then `@include` / `#include` files and `@includedir` /
//! `#includedir` directories (files in lexical order, skipping names that
//! end in `~` or contain a `.`), with `\` line continuations.
//!
//! Facts: `sudo.installed`, `sudo.files` (read, in order), `sudo.rules`
//! (each user specification, normalised), `sudo.nopasswd_rules`,
//! `sudo.nopasswd` (any), `sudo.defaults.<name>` (global `Defaults` only:
//! `true`/`false` for flags, the value otherwise), `sudo.scoped_defaults`
//! (`Defaults:user …` and friends, as written), `sudo.errors`.

use driftwatch_schemas::{FactPath, FactValue};

use super::Facts;
use crate::root::HostRoot;

const MAX_DEPTH: usize = 16;

/// What sudoers says, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sudoers {
    pub files: Vec<String>,
    pub rules: Vec<String>,
    pub defaults: Vec<(String, FactValue)>,
    pub scoped_defaults: Vec<String>,
    pub errors: Vec<String>,
}

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let installed = ["/usr/bin/sudo", "/bin/sudo"].iter().any(|p| matches!(root.metadata(p), Ok(Some(_))));
    facts.set(&FactPath::new(["sudo", "installed"]), installed);
    let s = parse(root);
    if !installed && s.files.is_empty() {
        return;
    }
    for e in &s.errors {
        facts.error("sudo", e.clone());
    }
    let nopasswd: Vec<String> = s.rules.iter().filter(|r| r.contains("NOPASSWD:")).cloned().collect();
    facts.set(&FactPath::new(["sudo", "nopasswd"]), !nopasswd.is_empty());
    facts.set(&FactPath::new(["sudo", "nopasswd_rules"]), nopasswd);
    facts.set(&FactPath::new(["sudo", "rules"]), s.rules.clone());
    facts.set(&FactPath::new(["sudo", "files"]), s.files.clone());
    facts.set(&FactPath::new(["sudo", "scoped_defaults"]), s.scoped_defaults.clone());
    // Later Defaults override earlier ones, as in sudo.
    for (k, v) in &s.defaults {
        facts.set(&FactPath::new(["sudo", "defaults", k.as_str()]), v.clone());
    }
}

pub fn parse(root: &HostRoot) -> Sudoers {
    let mut s = Sudoers::default();
    read_file(root, "/etc/sudoers", 0, &mut s);
    s
}

fn read_file(root: &HostRoot, path: &str, depth: usize, s: &mut Sudoers) {
    if depth > MAX_DEPTH {
        s.errors.push(format!("{path}: includes nested deeper than {MAX_DEPTH}"));
        return;
    }
    let text = match root.read_to_string(path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            if depth > 0 {
                s.errors.push(format!("{path}: included but missing"));
            }
            return;
        }
        Err(e) => {
            s.errors.push(format!("{path}: {e}"));
            return;
        }
    };
    s.files.push(path.to_string());
    let dir = path.rsplit_once('/').map(|(d, _)| d).filter(|d| !d.is_empty()).unwrap_or("/");
    for (line_no, line) in logical_lines(&text) {
        let line = line.trim();
        if let Some(target) = directive(line, "include") {
            read_file(root, &resolve(dir, target), depth + 1, s);
        } else if let Some(target) = directive(line, "includedir") {
            let d = resolve(dir, target);
            for f in root.glob(&format!("{}/*", d.trim_end_matches('/'))) {
                let name = f.rsplit('/').next().unwrap_or_default();
                if !name.ends_with('~') && !name.contains('.') {
                    read_file(root, &f, depth + 1, s);
                }
            }
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else if let Some(rest) = line.strip_prefix("Defaults") {
            defaults(rest, s, path, line_no);
        } else if ["User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "Cmd_Alias"].iter().any(|a| line.starts_with(a)) {
            continue;
        } else if line.contains('=') {
            s.rules.push(normalise(line));
        } else {
            s.errors.push(format!("{path}:{line_no}: not a sudoers statement: {line}"));
        }
    }
}

/// `@include x`, `#include x` (and the `dir` forms). A `#` followed by
/// anything else is a comment.
fn directive<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix('@').or_else(|| line.strip_prefix('#'))?;
    let rest = rest.strip_prefix(word)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let t = rest.trim().trim_matches('"');
    (!t.is_empty()).then_some(t)
}

fn resolve(dir: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", dir.trim_end_matches('/'))
    }
}

/// Joins `\`-continued lines; yields (first line number, text) with
/// trailing comments kept (sudoers has no trailing comments in rules).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim_end_matches('\r');
        if cur.is_empty() {
            start = i + 1;
        }
        match raw.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(raw);
                out.push((start, std::mem::take(&mut cur)));
            }
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

fn normalise(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Defaults use_pty, logfile="/var/log/sudo.log", !visiblepw` and the
/// scoped forms `Defaults:alice`, `Defaults@host`, `Defaults>root`, `Defaults!cmd`.
fn defaults(rest: &str, s: &mut Sudoers, path: &str, line_no: usize) {
    if rest.starts_with([':', '@', '>', '!']) {
        s.scoped_defaults.push(format!("Defaults{}", normalise(rest)));
        return;
    }
    if !rest.starts_with(char::is_whitespace) {
        s.errors.push(format!("{path}:{line_no}: malformed Defaults line"));
        return;
    }
    for item in split_params(rest) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if let Some(flag) = item.strip_prefix('!') {
            s.defaults.push((flag.trim().to_string(), FactValue::Bool(false)));
        } else if let Some((k, v)) = item.split_once("+=").or_else(|| item.split_once("-=")).or_else(|| item.split_once('=')) {
            let v = v.trim().trim_matches('"').to_string();
            s.defaults.push((k.trim().to_string(), FactValue::Str(v)));
        } else {
            s.defaults.push((item.to_string(), FactValue::Bool(true)));
        }
    }
}

/// Splits on commas outside double quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: &[(&str, &str)]) -> Facts {
        crate::facts::testing::collect_with(files, collect)
    }

    #[test]
    fn includes_defaults_and_nopasswd() {
        let f = facts(&[
            ("/usr/bin/sudo", ""),
            ("/etc/sudoers", "Defaults\tenv_reset, use_pty\nDefaults logfile=\"/var/log/sudo.log\", !visiblepw\nDefaults:alice !requiretty\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"),
            ("/etc/sudoers.d/90-ops", "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart app, \\\n   /usr/bin/journalctl\n"),
            ("/etc/sudoers.d/README", "#\n# comment only\n"),
            ("/etc/sudoers.d/old.bak", "evil ALL=(ALL) NOPASSWD: ALL\n"),
            ("/etc/sudoers.d/x~", "evil ALL=(ALL) NOPASSWD: ALL\n"),
        ]);
        assert_eq!(f.0["sudo.defaults.use_pty"], FactValue::Bool(true));
        assert_eq!(f.0["sudo.defaults.visiblepw"], FactValue::Bool(false));
        assert_eq!(f.0["sudo.defaults.logfile"], "/var/log/sudo.log".into());
        assert_eq!(f.0["sudo.nopasswd"], FactValue::Bool(true));
        assert_eq!(
            f.0["sudo.nopasswd_rules"],
            FactValue::List(vec!["deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart app, /usr/bin/journalctl".into()])
        );
        assert_eq!(
            f.0["sudo.files"],
            FactValue::List(vec!["/etc/sudoers".into(), "/etc/sudoers.d/90-ops".into(), "/etc/sudoers.d/README".into()])
        );
        assert_eq!(f.0["sudo.scoped_defaults"], FactValue::List(vec!["Defaults:alice !requiretty".into()]));
        assert!(!f.0.contains_key("sudo.errors"));
    }

    #[test]
    fn hash_include_and_authenticate_off() {
        let f = facts(&[
            ("/etc/sudoers", "#include sudoers.local\n#includedir-not a directive\n"),
            ("/etc/sudoers.local", "Defaults !authenticate\n"),
        ]);
        assert_eq!(f.0["sudo.defaults.authenticate"], FactValue::Bool(false));
        assert_eq!(f.0["sudo.nopasswd"], FactValue::Bool(false));
    }

    #[test]
    fn missing_include_and_garbage_are_errors_not_crashes() {
        let f = facts(&[("/etc/sudoers", "@include /etc/nope\nthis is not sudoers\n")]);
        let FactValue::List(errs) = &f.0["sudo.errors"] else { panic!() };
        assert!(errs[0].contains("/etc/nope: included but missing"));
        assert!(errs[1].starts_with("/etc/sudoers:2: not a sudoers statement"));
    }

    #[test]
    fn absent_sudo_gives_installed_false_only() {
        let f = facts(&[("/etc/hostname", "x")]);
        assert_eq!(f.0.len(), 1);
        assert_eq!(f.0["sudo.installed"], FactValue::Bool(false));
    }
}
