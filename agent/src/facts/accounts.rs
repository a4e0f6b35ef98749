//! `accounts.*`: local accounts and password policy. No password hash ever
//! leaves this module: shadow entries become a status word and ageing
//! numbers.
//!
//! Facts:
//! - `accounts.users`, `accounts.uid0` (names with uid 0),
//!   `accounts.duplicate_uids`, `accounts.duplicate_gids`,
//!   `accounts.duplicate_user_names`, `accounts.duplicate_group_names`;
//! - `accounts.user["<name>"].{uid, gid, home, shell, password}` where
//!   password is `set`, `empty`, `locked` or `none` (from shadow, or
//!   passwd when shadow has no entry), plus `last_change_days`,
//!   `min_days`, `max_days`, `warn_days` when shadow gives them;
//! - `accounts.empty_password`, `accounts.no_max_days` (names);
//! - `accounts.group["<name>"].{gid, members}`;
//! - `accounts.login_defs.<key>` for PASS_MAX_DAYS, PASS_MIN_DAYS,
//!   PASS_WARN_AGE (ints), UMASK, ENCRYPT_METHOD (strings);
//! - `accounts.pam.pwquality`, `accounts.pam.faillock` (module used in the
//!   PAM stack), `accounts.pwquality.<key>`, `accounts.faillock.<key>`.

use std::collections::{BTreeMap, BTreeSet};

use driftwatch_schemas::{FactPath, FactValue};

use super::Facts;
use crate::root::HostRoot;

struct User {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
    shell: String,
    passwd_field: String,
}

pub fn collect(root: &HostRoot, facts: &mut Facts) {
    let users = read(root, "/etc/passwd", facts).map(|t| parse_passwd(&t)).unwrap_or_default();
    let groups = read(root, "/etc/group", facts).map(|t| parse_group(&t)).unwrap_or_default();
    let shadow = read(root, "/etc/shadow", facts).map(|t| parse_shadow(&t)).unwrap_or_default();
    let a = FactPath::new(["accounts"]);

    if !users.is_empty() {
        facts.set(&a.child("users"), users.iter().map(|u| u.name.clone()).collect::<Vec<_>>());
        facts.set(&a.child("uid0"), users.iter().filter(|u| u.uid == 0).map(|u| u.name.clone()).collect::<Vec<_>>());
        facts.set(&a.child("duplicate_uids"), duplicates(users.iter().map(|u| u.uid.to_string())));
        facts.set(&a.child("duplicate_user_names"), duplicates(users.iter().map(|u| u.name.clone())));
        let mut empty = Vec::new();
        let mut no_max = Vec::new();
        for u in &users {
            let p = a.child("user").child(u.name.as_str());
            facts.set(&p.child("uid"), u.uid);
            facts.set(&p.child("gid"), u.gid);
            facts.set(&p.child("home"), u.home.as_str());
            facts.set(&p.child("shell"), u.shell.as_str());
            let sh = shadow.get(&u.name);
            let status = match sh {
                Some(s) => password_status(&s[0]),
                None => password_status(&u.passwd_field),
            };
            if status == "empty" {
                empty.push(u.name.clone());
            }
            facts.set(&p.child("password"), status);
            if let Some(s) = sh {
                for (i, key) in [(1, "last_change_days"), (2, "min_days"), (3, "max_days"), (4, "warn_days")] {
                    if let Some(v) = s.get(i).and_then(|v| v.parse::<i64>().ok()) {
                        facts.set(&p.child(key), v);
                    }
                }
                let max = s.get(3).and_then(|v| v.parse::<i64>().ok());
                if status == "set" && max.is_none_or(|m| m >= 99_999) {
                    no_max.push(u.name.clone());
                }
            }
        }
        facts.set(&a.child("empty_password"), empty);
        facts.set(&a.child("no_max_days"), no_max);
    }
    if !groups.is_empty() {
        facts.set(&a.child("duplicate_gids"), duplicates(groups.iter().map(|g| g.1.to_string())));
        facts.set(&a.child("duplicate_group_names"), duplicates(groups.iter().map(|g| g.0.clone())));
        for (name, gid, members) in &groups {
            let p = a.child("group").child(name.as_str());
            facts.set(&p.child("gid"), *gid);
            facts.set(&p.child("members"), members.clone());
        }
    }
    login_defs(root, facts);
    pam(root, facts);
}

fn read(root: &HostRoot, path: &str, facts: &mut Facts) -> Option<String> {
    match root.read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            facts.error("accounts", format!("{path}: {e}"));
            None
        }
    }
}

fn duplicates(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut dup = BTreeSet::new();
    for i in items {
        if !seen.insert(i.clone()) {
            dup.insert(i);
        }
    }
    dup.into_iter().collect()
}

fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.starts_with('#') || line.starts_with('+') || line.starts_with('-') {
        return None;
    }
    Some(line.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter_map(fields)
        .filter(|f| f.len() >= 7)
        .filter_map(|f| {
            Some(User {
                name: f[0].to_string(),
                passwd_field: f[1].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
                shell: f[6].to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<(String, i64, Vec<String>)> {
    text.lines()
        .filter_map(fields)
        .filter(|f| f.len() >= 4)
        .filter_map(|f| {
            let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).map(String::from).collect();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// name → [password field, last change, min, max, warn] (no other field kept).
fn parse_shadow(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(fields)
        .filter(|f| f.len() >= 2)
        .map(|f| (f[0].to_string(), (1..6).map(|i| f.get(i).copied().unwrap_or("").to_string()).collect()))
        .collect()
}

/// The password field as a status word; the hash itself is dropped here.
fn password_status(field: &str) -> &'static str {
    match field {
        "" => "empty",
        "x" => "shadowed",
        "*" | "!" | "!!" | "!*" => "none",
        f if f.starts_with('!') => "locked",
        _ => "set",
    }
}

fn login_defs(root: &HostRoot, facts: &mut Facts) {
    let Some(text) = read(root, "/etc/login.defs", facts) else { return };
    let base = FactPath::new(["accounts", "login_defs"]);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
        if k.starts_with('#') {
            continue;
        }
        match k {
            "PASS_MAX_DAYS" | "PASS_MIN_DAYS" | "PASS_WARN_AGE" | "PASS_MIN_LEN" | "LOGIN_RETRIES" | "LOGIN_TIMEOUT" => {
                if let Ok(n) = v.parse::<i64>() {
                    facts.set(&base.child(k.to_ascii_lowercase()), n);
                }
            }
            "UMASK" | "ENCRYPT_METHOD" | "SHA_CRYPT_MIN_ROUNDS" | "YESCRYPT_COST_FACTOR" => {
                facts.set(&base.child(k.to_ascii_lowercase()), v)
            }
            _ => {}
        }
    }
}

fn pam(root: &HostRoot, facts: &mut Facts) {
    let stacks = ["/etc/pam.d/common-password", "/etc/pam.d/common-auth", "/etc/pam.d/system-auth", "/etc/pam.d/password-auth"];
    let mut text = String::new();
    for s in stacks {
        if let Some(t) = read(root, s, facts) {
            text.push_str(&t);
            text.push('\n');
        }
    }
    let uses = |module: &str| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.split_whitespace().any(|w| w == module || w.ends_with(&format!("/{module}"))))
    };
    let pam = FactPath::new(["accounts", "pam"]);
    if !text.is_empty() {
        facts.set(&pam.child("pwquality"), uses("pam_pwquality.so"));
        facts.set(&pam.child("faillock"), uses("pam_faillock.so"));
    }
    for (file, key) in [("/etc/security/pwquality.conf", "pwquality"), ("/etc/security/faillock.conf", "faillock")] {
        let mut files = vec![file.to_string()];
        if key == "pwquality" {
            files.extend(root.glob("/etc/security/pwquality.conf.d/*.conf"));
        }
        for f in files {
            let Some(t) = read(root, &f, facts) else { continue };
            for (k, v) in key_values(&t) {
                let value = match v.parse::<i64>() {
                    Ok(n) => FactValue::Int(n),
                    Err(_) if v.is_empty() => FactValue::Bool(true),
                    Err(_) => FactValue::Str(v),
                };
                facts.set(&FactPath::new(["accounts", key, k.as_str()]), value);
            }
        }
    }
}

/// `key = value` and bare `key` lines (pwquality.conf(5), faillock.conf(5)).
fn key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: &[(&str, &str)]) -> Facts {
        crate::facts::testing::collect_with(files, collect)
    }

    const HASH: &str = "$6$salt$hashhashhashhashhash";

    #[test]
    fn accounts_flags_without_hashes() {
        let f = facts(&[
            ("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/bash\nbob:x:1000:1001::/home/bob:/bin/bash\nnopw:x:1002:1002::/:/bin/sh\r\n"),
            ("/etc/shadow", &format!("root:{HASH}:19000:0:99999:7:::\ntoor:!{HASH}:19000::::::\nalice:{HASH}:19500:1:90:7:::\nbob:*:19000::::::\nnopw::19000::::::\n")),
            ("/etc/group", "root:x:0:\nsudo:x:27:alice,bob\nroot:x:1:\n"),
        ]);
        assert!(!f.0.values().any(|v| v.to_json().contains("$6$")), "no hash leaves the module");
        assert_eq!(f.0["accounts.uid0"], FactValue::List(vec!["root".into(), "toor".into()]));
        assert_eq!(f.0["accounts.duplicate_uids"], FactValue::List(vec!["0".into(), "1000".into()]));
        assert_eq!(f.0["accounts.duplicate_group_names"], FactValue::List(vec!["root".into()]));
        assert_eq!(f.0["accounts.user.toor.password"], "locked".into());
        assert_eq!(f.0["accounts.user.bob.password"], "none".into());
        assert_eq!(f.0["accounts.user.alice.max_days"], FactValue::Int(90));
        assert_eq!(f.0["accounts.empty_password"], FactValue::List(vec!["nopw".into()]));
        assert_eq!(f.0["accounts.no_max_days"], FactValue::List(vec!["root".into()]));
        assert_eq!(f.0["accounts.group.sudo.members"], FactValue::List(vec!["alice".into(), "bob".into()]));
    }

    #[test]
    fn login_defs_and_pam_policy() {
        let f = facts(&[
            ("/etc/login.defs", "# c\nPASS_MAX_DAYS\t90\nPASS_MIN_DAYS 1\nUMASK 027\nENCRYPT_METHOD YESCRYPT\n"),
            ("/etc/pam.d/common-password", "password requisite pam_pwquality.so retry=3\n# password required pam_faillock.so\n"),
            ("/etc/security/pwquality.conf", "minlen = 14\n# dcredit = -1\nenforce_for_root\n"),
        ]);
        assert_eq!(f.0["accounts.login_defs.pass_max_days"], FactValue::Int(90));
        assert_eq!(f.0["accounts.login_defs.umask"], "027".into());
        assert_eq!(f.0["accounts.pam.pwquality"], FactValue::Bool(true));
        assert_eq!(f.0["accounts.pam.faillock"], FactValue::Bool(false));
        assert_eq!(f.0["accounts.pwquality.minlen"], FactValue::Int(14));
        assert_eq!(f.0["accounts.pwquality.enforce_for_root"], FactValue::Bool(true));
        assert!(!f.0.contains_key("accounts.pwquality.dcredit"));
    }
}
