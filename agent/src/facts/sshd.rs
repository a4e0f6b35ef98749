//! `sshd.*`: the effective OpenSSH server configuration, read the way sshd
//! reads it (sshd_config(5)):
//! - keywords are case-insensitive; `Keyword value` or `Keyword=value`;
//! - for most keywords the first obtained value wins; list keywords
//!   (AllowUsers, ListenAddress, …) accumulate;
//! - `Include` takes globs, relative paths are under `/etc/ssh`, files in
//!   lexical order, read in place;
//! - lines after `Match` belong to that block until the next `Match`, kept
//!   apart under `sshd.match["<criteria>"]`;
//! - absent keywords take OpenSSH's defaults; `sshd.explicit` lists the
//!   keywords that were set in the files.
//!
//! Facts: `sshd.installed` (the openssh-server package or an sshd binary), `sshd.config.<keyword>`, `sshd.explicit`,
//! `sshd.matches`, `sshd.match["<criteria>"].<keyword>`, `sshd.errors`.

use std::collections::BTreeMap;

use driftwatch_schemas::{FactPath, FactValue};

use super::Facts;
use crate::root::HostRoot;

const CONFIG: &str = "/etc/ssh/sshd_config";
const MAX_INCLUDE_DEPTH: usize = 16;

/// OpenSSH's compiled-in defaults for the keywords controls care about.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("addressfamily", "any"),
    ("allowagentforwarding", "yes"),
    ("allowtcpforwarding", "yes"),
    ("banner", "none"),
    ("challengeresponseauthentication", "yes"),
    ("ciphers", "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"),
    ("clientalivecountmax", "3"),
    ("clientaliveinterval", "0"),
    ("compression", "yes"),
    ("gatewayports", "no"),
    ("gssapiauthentication", "no"),
    ("hostbasedauthentication", "no"),
    ("ignorerhosts", "yes"),
    ("kbdinteractiveauthentication", "yes"),
    ("loglevel", "INFO"),
    ("logingracetime", "120"),
    ("maxauthtries", "6"),
    ("maxsessions", "10"),
    ("maxstartups", "10:30:100"),
    ("passwordauthentication", "yes"),
    ("permitemptypasswords", "no"),
    ("permitrootlogin", "prohibit-password"),
    ("permittunnel", "no"),
    ("permituserenvironment", "no"),
    ("port", "22"),
    ("pubkeyauthentication", "yes"),
    ("strictmodes", "yes"),
    ("syslogfacility", "AUTH"),
    ("tcpkeepalive", "yes"),
    ("usedns", "no"),
    ("usepam", "no"),
    ("x11forwarding", "no"),
];

/// Keywords whose every occurrence adds to a list.
const LIST_KEYWORDS: &[&str] =
    &["acceptenv", "allowgroups", "allowusers", "denygroups", "denyusers", "hostkey", "listenaddress", "port", "setenv", "subsystem"];
/// Keywords with an integer value.
const INT_KEYWORDS: &[&str] = &["clientalivecountmax", "maxauthtries", "maxsessions", "x11displayoffset"];
/// Keywords with a time value (sshd_config(5) TIME FORMATS), as seconds.
const TIME_KEYWORDS: &[&str] = &["clientaliveinterval", "logingracetime"];

/// One configuration scope: global, or one Match block.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    /// keyword → values in the order obtained.
    pub values: BTreeMap<String, Vec<String>>,
}

impl Settings {
    fn add(&mut self, keyword: &str, args: Vec<String>) {
        let list = LIST_KEYWORDS.contains(&keyword);
        let entry = self.values.entry(keyword.to_string()).or_default();
        if list {
            entry.extend(args);
        } else if entry.is_empty() {
            entry.push(args.join(" "));
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SshdConfig {
    pub global: Settings,
    /// Match blocks in order: (criteria, settings).
    pub matches: Vec<(String, Settings)>,
    pub errors: Vec<String>,
}

/// `packages`: installed package names (openssh-server counts as sshd).
pub fn collect(root: &HostRoot, packages: &std::collections::BTreeSet<String>, facts: &mut Facts) {
    let installed = ["openssh-server", "openssh-server-pam"].iter().any(|p| packages.contains(*p))
        || ["/usr/sbin/sshd", "/usr/bin/sshd"].iter().any(|p| matches!(root.metadata(p), Ok(Some(_))));
    facts.set(&FactPath::new(["sshd", "installed"]), installed);
    let exists = matches!(root.metadata(CONFIG), Ok(Some(_)));
    if !installed && !exists {
        return;
    }
    let cfg = parse(root);
    for e in &cfg.errors {
        facts.error("sshd", e.clone());
    }
    let base = FactPath::new(["sshd", "config"]);
    let mut explicit: Vec<String> = cfg.global.values.keys().cloned().collect();
    explicit.sort();
    for (k, default) in DEFAULTS {
        if !cfg.global.values.contains_key(*k) {
            facts.set(&base.child(*k), typed(k, &[default.to_string()]));
        }
    }
    for (k, v) in &cfg.global.values {
        facts.set(&base.child(k.as_str()), typed(k, v));
    }
    facts.set(&FactPath::new(["sshd", "explicit"]), explicit);
    facts.set(&FactPath::new(["sshd", "matches"]), cfg.matches.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    for (criteria, settings) in &cfg.matches {
        let mb = FactPath::new(["sshd", "match", criteria.as_str()]);
        for (k, v) in &settings.values {
            facts.set(&mb.child(k.as_str()), typed(k, v));
        }
    }
}

fn typed(keyword: &str, values: &[String]) -> FactValue {
    if LIST_KEYWORDS.contains(&keyword) {
        return FactValue::List(values.to_vec());
    }
    let v = values.first().cloned().unwrap_or_default();
    if INT_KEYWORDS.contains(&keyword) {
        if let Ok(i) = v.parse::<i64>() {
            return FactValue::Int(i);
        }
    }
    if TIME_KEYWORDS.contains(&keyword) {
        if let Some(s) = parse_time(&v) {
            return FactValue::Int(s);
        }
    }
    FactValue::Str(v)
}

/// sshd's time format: `90`, `5m`, `1h30m`, `2W` … → seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse().ok()?)?;
    } else if s.is_empty() {
        return None;
    }
    Some(total)
}

/// Parses `/etc/ssh/sshd_config` and everything it includes.
pub fn parse(root: &HostRoot) -> SshdConfig {
    let mut cfg = SshdConfig::default();
    let mut current: Option<usize> = None;
    read_file(root, CONFIG, 0, &mut cfg, &mut current);
    cfg
}

fn read_file(root: &HostRoot, path: &str, depth: usize, cfg: &mut SshdConfig, current: &mut Option<usize>) {
    if depth > MAX_INCLUDE_DEPTH {
        cfg.errors.push(format!("{path}: Include nested deeper than {MAX_INCLUDE_DEPTH}"));
        return;
    }
    let text = match root.read_to_string(path) {
        Ok(Some(t)) => t,
        Ok(None) if depth == 0 => return,
        Ok(None) => return, // Include of a missing file is not an error for sshd.
        Err(e) => {
            cfg.errors.push(format!("{path}: {e}"));
            return;
        }
    };
    for (n, line) in text.lines().enumerate() {
        let Some((keyword, args)) = split_line(line) else { continue };
        let keyword = keyword.to_ascii_lowercase();
        match keyword.as_str() {
            "include" => {
                for pattern in &args {
                    let pattern = if pattern.starts_with('/') { pattern.clone() } else { format!("/etc/ssh/{pattern}") };
                    for p in root.glob(&pattern) {
                        read_file(root, &p, depth + 1, cfg, current);
                    }
                }
            }
            "match" => {
                if args.is_empty() {
                    cfg.errors.push(format!("{path}:{}: Match without criteria", n + 1));
                    continue;
                }
                let criteria = args.join(" ");
                let idx = cfg.matches.iter().position(|(c, _)| *c == criteria).unwrap_or_else(|| {
                    cfg.matches.push((criteria, Settings::default()));
                    cfg.matches.len() - 1
                });
                *current = Some(idx);
            }
            _ if args.is_empty() => cfg.errors.push(format!("{path}:{}: {keyword} has no value", n + 1)),
            _ => match current {
                None => cfg.global.add(&keyword, args),
                Some(i) => cfg.matches[*i].1.add(&keyword, args),
            },
        }
    }
}

/// Splits a line into keyword and arguments; `None` for blanks and
/// comments. Handles `Keyword=value`, double quotes, and CRLF.
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim_end_matches('\r').trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut had = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                had = true;
            }
            '#' if !quoted && cur.is_empty() && !had => break,
            c if !quoted && (c.is_whitespace() || (c == '=' && tokens.is_empty())) => {
                if had || !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                    had = false;
                }
            }
            c => cur.push(c),
        }
    }
    if had || !cur.is_empty() {
        tokens.push(cur);
    }
    let mut it = tokens.into_iter();
    let keyword = it.next()?;
    Some((keyword, it.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(files: &[(&str, &str)]) -> Facts {
        crate::facts::testing::collect_with(files, |r, f| collect(r, &Default::default(), f))
    }

    fn get<'a>(f: &'a Facts, p: &str) -> Option<&'a FactValue> {
        f.0.get(p)
    }

    #[test]
    fn first_value_wins_case_insensitive_with_equals_and_crlf() {
        let f = facts(&[(CONFIG, "# comment\r\nPermitRootLogin=no\r\npermitrootlogin yes\r\nMaxAuthTries  4\r\n")]);
        assert_eq!(get(&f, "sshd.config.permitrootlogin"), Some(&"no".into()));
        assert_eq!(get(&f, "sshd.config.maxauthtries"), Some(&FactValue::Int(4)));
        assert_eq!(get(&f, "sshd.config.x11forwarding"), Some(&"no".into()), "default");
        assert_eq!(get(&f, "sshd.explicit"), Some(&FactValue::List(vec!["maxauthtries".into(), "permitrootlogin".into()])));
    }

    #[test]
    fn includes_with_globs_are_read_in_place_and_in_order() {
        let f = facts(&[
            (CONFIG, "Include sshd_config.d/*.conf\nPermitRootLogin yes\n"),
            ("/etc/ssh/sshd_config.d/20-b.conf", "PermitRootLogin prohibit-password\nClientAliveInterval 5m\n"),
            ("/etc/ssh/sshd_config.d/10-a.conf", "PermitRootLogin no\nAllowUsers alice\n"),
        ]);
        assert_eq!(get(&f, "sshd.config.permitrootlogin"), Some(&"no".into()));
        assert_eq!(get(&f, "sshd.config.clientaliveinterval"), Some(&FactValue::Int(300)));
        assert_eq!(get(&f, "sshd.config.allowusers"), Some(&FactValue::List(vec!["alice".into()])));
    }

    #[test]
    fn match_blocks_are_kept_apart() {
        let f = facts(&[(
            CONFIG,
            "PasswordAuthentication no\nMatch User bob Address 10.0.0.0/8\n  PasswordAuthentication yes\n  PermitRootLogin yes\n",
        )]);
        assert_eq!(get(&f, "sshd.config.passwordauthentication"), Some(&"no".into()));
        assert_eq!(get(&f, "sshd.config.permitrootlogin"), Some(&"prohibit-password".into()));
        assert_eq!(get(&f, r#"sshd.match["User bob Address 10.0.0.0/8"].permitrootlogin"#), Some(&"yes".into()));
        assert_eq!(get(&f, "sshd.matches"), Some(&FactValue::List(vec!["User bob Address 10.0.0.0/8".into()])));
    }

    #[test]
    fn quotes_and_trailing_comments() {
        assert_eq!(split_line(r#"Banner "/etc/my banner""#), Some(("Banner".into(), vec!["/etc/my banner".into()])));
        assert_eq!(split_line("  # x"), None);
        assert_eq!(split_line("Port 22 # main"), Some(("Port".into(), vec!["22".into()])));
    }

    #[test]
    fn not_installed_and_no_config_gives_only_installed_false() {
        let f = facts(&[("/etc/hostname", "h")]);
        assert_eq!(get(&f, "sshd.installed"), Some(&FactValue::Bool(false)));
        assert!(get(&f, "sshd.config.permitrootlogin").is_none());
    }

    #[test]
    fn the_package_alone_means_installed() {
        let pkgs = ["openssh-server".to_string()].into();
        let f = crate::facts::testing::collect_with(&[("/etc/hostname", "h")], |r, f| collect(r, &pkgs, f));
        assert_eq!(get(&f, "sshd.installed"), Some(&FactValue::Bool(true)));
        assert_eq!(get(&f, "sshd.config.permitrootlogin"), Some(&"prohibit-password".into()), "defaults apply");
    }

    #[test]
    fn time_format() {
        assert_eq!(parse_time("90"), Some(90));
        assert_eq!(parse_time("1h30m"), Some(5400));
        assert_eq!(parse_time("2W"), Some(1_209_600));
        assert_eq!(parse_time("5x"), None);
        assert_eq!(parse_time(""), None);
    }
}
