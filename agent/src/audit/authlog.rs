//! Auth log lines (`/var/log/auth.log`, `/var/log/secure`) into audit
//! events: sshd logins, sudo, su, account and group changes, password
//! changes. Both syslog timestamp styles are read: RFC 3339
//! (`2026-11-22T19:22:18.123456+00:00 host prog[pid]: msg`, Debian 12's
//! default) and BSD (`Nov 22 19:22:18 host prog[pid]: msg`, no year: the
//! current one is assumed, or last year's for a date in the future).
//!
//! A line that matches no known message is still an event (`action` is the
//! program name); a line that isn't syslog at all becomes `unparsed` with a
//! `parse_error`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use driftwatch_schemas::{Actor, Outcome};
use regex::Regex;

/// The parsed part of an auth log line (identity fields are added by the
/// caller).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub timestamp: Option<DateTime<Utc>>,
    pub actor: Actor,
    pub action: String,
    pub object: Option<String>,
    pub outcome: Outcome,
    pub source_address: Option<String>,
    pub extra: BTreeMap<String, String>,
}

static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r"^(?:(?P<iso>\d{4}-\d{2}-\d{2}T\S+)|(?P<bsd>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}))\s+(?P<host>\S+)\s+(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?:\s?(?P<msg>.*)$").unwrap()
});
static SSH_ACCEPTED: LazyLock<Regex> =
    LazyLock::new(|| crate::memory::regex(r"^Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<addr>\S+) port (?P<port>\d+)").unwrap());
static SSH_FAILED: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r"^Failed (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>\S*) from (?P<addr>\S+) port (?P<port>\d+)")
        .unwrap()
});
static SSH_INVALID: LazyLock<Regex> =
    LazyLock::new(|| crate::memory::regex(r"^Invalid user (?P<user>\S*) from (?P<addr>\S+)(?: port (?P<port>\d+))?").unwrap());
static SUDO: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"^\s*(?P<user>\S+) : (?P<rest>.*)$").unwrap());
static SU: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r"^(?P<failed>FAILED SU|FAILED su|)\s*\(to (?P<target>[^)]+)\) (?P<user>\S+) on (?P<tty>\S+)").unwrap()
});
static NEW_USER: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"^new user: name=(?P<name>[^,]+), UID=(?P<uid>\d+)").unwrap());
static NEW_GROUP: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"^new group: name=(?P<name>[^,]+)").unwrap());
static DEL_USER: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"^delete user '(?P<name>[^']+)'").unwrap());
static MOD_USER: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"^(?:change user|add|delete) '(?P<name>[^']+)'").unwrap());
static PASSWD: LazyLock<Regex> = LazyLock::new(|| crate::memory::regex(r"password changed for (?P<name>\S+)").unwrap());

/// Parses one line. `now` fixes the year of BSD timestamps.
pub fn parse(line: &str, now: DateTime<Utc>) -> Parsed {
    let mut p = Parsed::empty();
    let Some(c) = SYSLOG.captures(line) else {
        p.extra.insert("parse_error".into(), "not a syslog line".into());
        return p;
    };
    p.timestamp = match (c.name("iso"), c.name("bsd")) {
        (Some(iso), _) => DateTime::parse_from_rfc3339(iso.as_str()).ok().map(|t| t.with_timezone(&Utc)),
        (_, Some(bsd)) => bsd_time(bsd.as_str(), now),
        _ => None,
    };
    if p.timestamp.is_none() {
        p.extra.insert("parse_error".into(), "unreadable timestamp".into());
    }
    p.extra.insert("host".into(), c["host"].to_string());
    parse_message(&c["prog"], c.name("pid").map(|m| m.as_str()), &c["msg"], &mut p);
    p
}

impl Parsed {
    /// Nothing known yet: action `unparsed`, outcome unknown.
    pub fn empty() -> Parsed {
        Parsed {
            timestamp: None,
            actor: Actor::default(),
            action: "unparsed".into(),
            object: None,
            outcome: Outcome::Unknown,
            source_address: None,
            extra: BTreeMap::new(),
        }
    }
}

/// Interprets one program's message (the part after `prog[pid]: `); shared
/// by the auth log and journald, which carry the same messages.
pub fn parse_message(prog: &str, pid: Option<&str>, msg: &str, p: &mut Parsed) {
    let prog = prog.to_string();
    p.extra.insert("program".into(), prog.clone());
    if let Some(pid) = pid {
        p.extra.insert("pid".into(), pid.into());
    }
    p.action = prog.clone();
    match prog.as_str() {
        "sshd" => sshd(msg, p),
        "sudo" => sudo(msg, p),
        "su" => su(msg, p),
        "useradd" | "userdel" | "usermod" | "groupadd" | "groupdel" | "groupmod" => accounts(&prog, msg, p),
        _ => {}
    }
    if let Some(c) = PASSWD.captures(msg) {
        p.action = "password_change".into();
        p.object = Some(c["name"].to_string());
        p.outcome = Outcome::Success;
    }
}

fn bsd_time(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let parse =
        |year: i32| NaiveDateTime::parse_from_str(&format!("{year} {s}"), "%Y %b %e %H:%M:%S").ok().map(|t| Utc.from_utc_datetime(&t));
    let t = parse(now.year())?;
    // A date more than a day ahead is from last year (logs around 1 January).
    if t > now + chrono::Duration::days(1) {
        parse(now.year() - 1)
    } else {
        Some(t)
    }
}

fn sshd(msg: &str, p: &mut Parsed) {
    if let Some(c) = SSH_ACCEPTED.captures(msg) {
        p.action = "ssh_login".into();
        p.outcome = Outcome::Success;
        p.actor.user = Some(c["user"].to_string());
        p.source_address = Some(c["addr"].to_string());
        p.extra.insert("method".into(), c["method"].to_string());
        p.extra.insert("port".into(), c["port"].to_string());
    } else if let Some(c) = SSH_FAILED.captures(msg) {
        p.action = "ssh_login_failed".into();
        p.outcome = Outcome::Failure;
        p.actor.user = Some(c["user"].to_string());
        p.source_address = Some(c["addr"].to_string());
        p.extra.insert("method".into(), c["method"].to_string());
        p.extra.insert("port".into(), c["port"].to_string());
        if c.name("invalid").is_some() {
            p.extra.insert("invalid_user".into(), "true".into());
        }
    } else if let Some(c) = SSH_INVALID.captures(msg) {
        p.action = "ssh_invalid_user".into();
        p.outcome = Outcome::Failure;
        p.actor.user = Some(c["user"].to_string());
        p.source_address = Some(c["addr"].to_string());
    }
}

fn sudo(msg: &str, p: &mut Parsed) {
    let Some(c) = SUDO.captures(msg) else { return };
    let rest = &c["rest"];
    if !rest.contains("COMMAND=") {
        return;
    }
    p.action = "sudo".into();
    p.actor.user = Some(c["user"].to_string());
    // Fields come before COMMAND=, which runs to the end of the line (a
    // command may itself contain " ; ").
    let cmd_at = rest.find("COMMAND=").unwrap_or(rest.len());
    p.object = Some(rest[cmd_at..].trim_start_matches("COMMAND=").to_string());
    let mut denied = None;
    for part in rest[..cmd_at].split(';').map(str::trim).filter(|x| !x.is_empty()) {
        match part.split_once('=') {
            Some(("TTY", v)) => drop(p.extra.insert("tty".into(), v.into())),
            Some(("PWD", v)) => drop(p.extra.insert("pwd".into(), v.into())),
            Some(("USER", v)) => drop(p.extra.insert("target_user".into(), v.into())),
            Some(_) => {}
            None => denied = Some(part.to_string()),
        }
    }
    match denied {
        Some(reason) => {
            p.outcome = Outcome::Failure;
            p.extra.insert("reason".into(), reason);
        }
        None => p.outcome = Outcome::Success,
    }
}

fn su(msg: &str, p: &mut Parsed) {
    if let Some(c) = SU.captures(msg) {
        p.action = "su".into();
        p.actor.user = Some(c["user"].to_string());
        p.object = Some(c["target"].to_string());
        p.extra.insert("target_user".into(), c["target"].to_string());
        p.extra.insert("tty".into(), c["tty"].to_string());
        p.outcome = if c["failed"].is_empty() { Outcome::Success } else { Outcome::Failure };
    }
}

fn accounts(prog: &str, msg: &str, p: &mut Parsed) {
    let (action, re): (&str, &Regex) = match prog {
        "useradd" => ("user_add", &NEW_USER),
        "groupadd" => ("group_add", &NEW_GROUP),
        "userdel" => ("user_delete", &DEL_USER),
        "usermod" => ("user_modify", &MOD_USER),
        _ => ("group_change", &MOD_USER),
    };
    if let Some(c) = re.captures(msg) {
        p.action = action.into();
        p.object = Some(c["name"].to_string());
        p.outcome = Outcome::Success;
        p.extra.insert("detail".into(), msg.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 20, 0, 0).unwrap()
    }

    #[test]
    fn ssh_accepted_failed_invalid() {
        let a =
            parse("Nov 22 19:22:18 web1 sshd[811]: Accepted publickey for alice from 192.0.2.7 port 52113 ssh2: ED25519 SHA256:x", now());
        assert_eq!(
            (a.action.as_str(), a.outcome, a.actor.user.as_deref(), a.source_address.as_deref()),
            ("ssh_login", Outcome::Success, Some("alice"), Some("192.0.2.7"))
        );
        assert_eq!(a.timestamp, Some(Utc.with_ymd_and_hms(2026, 11, 22, 19, 22, 18).unwrap()));
        let f = parse(
            "2026-11-22T19:22:18.123456+01:00 web1 sshd[9]: Failed password for invalid user bob from 198.51.100.2 port 4 ssh2",
            now(),
        );
        assert_eq!(
            (f.action.as_str(), f.outcome, f.extra.get("invalid_user").map(String::as_str)),
            ("ssh_login_failed", Outcome::Failure, Some("true"))
        );
        assert_eq!(f.timestamp.unwrap().timestamp_subsec_millis(), 123);
        let i = parse("Nov  2 01:02:03 web1 sshd[9]: Invalid user admin from 203.0.113.9 port 22", now());
        assert_eq!((i.action.as_str(), i.actor.user.as_deref()), ("ssh_invalid_user", Some("admin")));
    }

    #[test]
    fn sudo_command_target_and_denial() {
        let s = parse("Nov 22 19:30:00 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/sed -i s/a/b/ /etc/ssh/sshd_config ; echo", now());
        assert_eq!((s.action.as_str(), s.outcome), ("sudo", Outcome::Success));
        assert_eq!(s.object.as_deref(), Some("/usr/bin/sed -i s/a/b/ /etc/ssh/sshd_config ; echo"));
        assert_eq!(s.extra["target_user"], "root");
        let d = parse("Nov 22 19:30:00 web1 sudo:      eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh", now());
        assert_eq!((d.outcome, d.extra["reason"].as_str()), (Outcome::Failure, "user NOT in sudoers"));
    }

    #[test]
    fn su_accounts_passwords() {
        let s = parse("Nov 22 19:30:00 web1 su[5]: FAILED SU (to root) bob on pts/2", now());
        assert_eq!((s.action.as_str(), s.outcome, s.object.as_deref()), ("su", Outcome::Failure, Some("root")));
        let u = parse(
            "Nov 22 19:30:00 web1 useradd[5]: new user: name=mallory, UID=1002, GID=1002, home=/home/mallory, shell=/bin/bash",
            now(),
        );
        assert_eq!((u.action.as_str(), u.object.as_deref()), ("user_add", Some("mallory")));
        let p = parse("Nov 22 19:30:00 web1 passwd[5]: pam_unix(passwd:chauthtok): password changed for alice", now());
        assert_eq!((p.action.as_str(), p.object.as_deref()), ("password_change", Some("alice")));
    }

    #[test]
    fn unknown_and_garbage_lines_are_kept() {
        let c = parse("Nov 22 19:30:00 web1 CRON[5]: pam_unix(cron:session): session opened for user root", now());
        assert_eq!((c.action.as_str(), c.outcome), ("CRON", Outcome::Unknown));
        let g = parse("\u{0}\u{1} garbage", now());
        assert_eq!((g.action.as_str(), g.extra["parse_error"].as_str()), ("unparsed", "not a syslog line"));
    }

    #[test]
    fn bsd_dates_in_the_future_are_last_year() {
        let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 5, 0).unwrap();
        let p = parse("Dec 31 23:59:59 h sshd[1]: x", jan);
        assert_eq!(p.timestamp.unwrap().year(), 2026);
    }
}
