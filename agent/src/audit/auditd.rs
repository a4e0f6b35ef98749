//! auditd's `audit.log` into audit events. auditd writes one event as
//! several records sharing a serial (`msg=audit(1700000000.123:4242)`):
//! SYSCALL with EXECVE, CWD, PATH, PROCTITLE and a closing EOE; user-space
//! events (USER_LOGIN, USER_CMD, ADD_USER, …) are a single record. The
//! [`Assembler`] groups records by serial; [`to_event`] turns a group into
//! one [`Parsed`] event: hex-encoded values decoded, uid/auid mapped to
//! names (auditd's own enriched `UID="…"` fields when present, else the
//! host's passwd).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use driftwatch_schemas::Outcome;

use super::authlog::Parsed;
use super::tail::Line;

/// One record: its type, event time and serial, and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub serial: u64,
    pub fields: BTreeMap<String, String>,
}

/// Parses `type=X msg=audit(T:S): k=v k="v" …`, including the nested
/// `msg='…'` of user-space records (its fields are merged in).
pub fn parse_record(line: &str) -> Option<Record> {
    let rest = line.strip_prefix("type=")?;
    let (kind, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("msg=audit(")?;
    let (stamp, rest) = rest.split_once("):")?;
    let (time, serial) = stamp.split_once(':')?;
    let (secs, millis) = time.split_once('.').unwrap_or((time, "0"));
    let timestamp = Utc.timestamp_opt(secs.parse().ok()?, millis.parse::<u32>().ok()?.min(999) * 1_000_000).single();
    let execve = kind == "EXECVE";
    let value = |k: &str, v: String, quoted: bool| if !quoted && is_encoded_field(k, execve) { decode_hex(&v) } else { v };
    let mut fields = BTreeMap::new();
    for (k, v, quoted) in split_fields(rest) {
        if k == "msg" {
            for (k2, v2, q2) in split_fields(&v) {
                let v2 = value(&k2, v2, q2);
                fields.insert(k2, v2);
            }
        } else {
            let v = value(&k, v, quoted);
            fields.insert(k, v);
        }
    }
    Some(Record { kind: kind.to_string(), timestamp, serial: serial.parse().ok()?, fields })
}

/// Fields auditd may hex-encode (untrusted strings); numbers and syscall
/// registers never are. `aN` are strings only in EXECVE records.
fn is_encoded_field(key: &str, execve: bool) -> bool {
    const STRINGS: [&str; 14] =
        ["name", "cmd", "proctitle", "cwd", "exe", "comm", "acct", "path", "data", "key", "dir", "watch", "ocomm", "old-disk"];
    STRINGS.contains(&key) || (execve && key.len() > 1 && key.starts_with('a') && key[1..].bytes().all(|c| c.is_ascii_digit()))
}

/// Splits `k=v k="quoted v" k='single'` pairs; says which were quoted.
/// (auditd 3's enriched format appends fields after a 0x1d separator.)
fn split_fields(s: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let s = s.replace('\u{1d}', " ");
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_whitespace() {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != '=' && !b[i].is_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != '=' {
            continue;
        }
        let key: String = b[ks..i].iter().collect();
        i += 1;
        let quoted = i < b.len() && (b[i] == '"' || b[i] == '\'');
        let value: String = if quoted {
            let q = b[i];
            let vs = i + 1;
            i = vs;
            while i < b.len() && b[i] != q {
                i += 1;
            }
            let v = b[vs..i.min(b.len())].iter().collect();
            i += 1;
            v
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_whitespace() {
                i += 1;
            }
            b[vs..i].iter().collect()
        };
        if !key.is_empty() {
            out.push((key, value, quoted));
        }
    }
    out
}

/// auditd hex-encodes values with spaces or special characters: such a
/// value is unquoted, even-length, upper-case hex. Applied only to
/// unquoted values.
pub fn decode_hex(v: &str) -> String {
    if v.len() >= 2 && v.len().is_multiple_of(2) && v.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()) {
        let bytes: Option<Vec<u8>> = (0..v.len()).step_by(2).map(|i| u8::from_str_radix(&v[i..i + 2], 16).ok()).collect();
        if let Some(bytes) = bytes {
            // Command lines separate arguments with NUL.
            return String::from_utf8_lossy(&bytes).replace('\0', " ").trim_end().to_string();
        }
    }
    v.to_string()
}

/// The records of one event and where its first line was.
#[derive(Debug, Clone)]
pub struct Group {
    pub records: Vec<Record>,
    pub first: Line,
    /// The raw lines, for the event's `raw` field.
    pub raw: Vec<String>,
}

/// Groups records by serial. Records of one event are written together;
/// a group ends at EOE, at a record with another serial, or on [`flush`].
#[derive(Default)]
pub struct Assembler {
    pending: Option<Group>,
}

impl Assembler {
    /// Adds a line; returns groups that are complete. A line that is not
    /// an audit record comes back as a group of its own with no records.
    pub fn push(&mut self, line: &Line) -> Vec<Group> {
        let mut done = Vec::new();
        let Some(rec) = parse_record(&line.text) else {
            done.extend(self.pending.take());
            done.push(Group { records: Vec::new(), first: line.clone(), raw: vec![line.text.clone()] });
            return done;
        };
        if self.pending.as_ref().is_some_and(|g| g.records[0].serial != rec.serial) {
            done.extend(self.pending.take());
        }
        let eoe = rec.kind == "EOE";
        match self.pending.as_mut() {
            Some(g) => {
                g.records.push(rec);
                g.raw.push(line.text.clone());
            }
            None => self.pending = Some(Group { records: vec![rec], first: line.clone(), raw: vec![line.text.clone()] }),
        }
        if eoe {
            done.extend(self.pending.take());
        }
        done
    }

    /// The first line of the event still being assembled.
    pub fn pending_first(&self) -> Option<&Line> {
        self.pending.as_ref().map(|g| &g.first)
    }

    /// Ends the pending group (after a quiet poll).
    pub fn flush(&mut self) -> Option<Group> {
        self.pending.take()
    }
}

/// uid → user name.
pub type Users = HashMap<i64, String>;

/// Reads `/etc/passwd` text into a uid map.
pub fn users_from_passwd(text: &str) -> Users {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

fn user_of(rec: &Record, key: &str, enriched: &str, users: &Users) -> Option<String> {
    if let Some(n) = rec.fields.get(enriched) {
        return Some(n.clone());
    }
    let id: i64 = rec.fields.get(key)?.parse().ok()?;
    // 4294967295 (-1) means "unset" (e.g. auid before login).
    if id == 4_294_967_295 || id == -1 {
        return None;
    }
    Some(users.get(&id).cloned().unwrap_or_else(|| id.to_string()))
}

/// Turns a group into an event.
pub fn to_event(group: &Group, users: &Users) -> Parsed {
    let mut p = Parsed::empty();
    let Some(first) = group.records.first() else {
        p.extra.insert("parse_error".into(), "not an audit record".into());
        return p;
    };
    p.timestamp = first.timestamp;
    p.extra.insert("serial".into(), first.serial.to_string());
    p.extra.insert("record_types".into(), group.records.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>().join(","));
    let find = |k: &str| group.records.iter().find(|r| r.kind == k);
    if let Some(sc) = find("SYSCALL") {
        p.action = if find("EXECVE").is_some() { "exec".into() } else { "syscall".into() };
        p.outcome = match sc.fields.get("success").map(String::as_str) {
            Some("yes") => Outcome::Success,
            Some("no") => Outcome::Failure,
            _ => Outcome::Unknown,
        };
        p.actor.user = user_of(sc, "auid", "AUID", users).or_else(|| user_of(sc, "uid", "UID", users));
        p.actor.auid = user_of(sc, "auid", "AUID", users);
        p.actor.uid = sc.fields.get("uid").and_then(|u| u.parse().ok());
        for k in ["syscall", "SYSCALL", "exe", "comm", "tty", "ses", "key", "pid", "exit"] {
            if let Some(v) = sc.fields.get(k) {
                p.extra.insert(k.to_ascii_lowercase(), v.clone());
            }
        }
        if let Some(user) = user_of(sc, "uid", "UID", users) {
            p.extra.insert("uid_name".into(), user);
        }
        if let Some(cwd) = find("CWD").and_then(|r| r.fields.get("cwd")) {
            p.extra.insert("cwd".into(), cwd.clone());
        }
        let paths: Vec<String> = group
            .records
            .iter()
            .filter(|r| r.kind == "PATH" && r.fields.get("nametype").is_none_or(|t| t != "PARENT"))
            .filter_map(|r| r.fields.get("name").cloned())
            .collect();
        if let Some(ex) = find("EXECVE") {
            let argc: usize = ex.fields.get("argc").and_then(|a| a.parse().ok()).unwrap_or(0);
            let args: Vec<String> = (0..argc).filter_map(|i| ex.fields.get(&format!("a{i}")).cloned()).collect();
            p.object = Some(args.join(" "));
        } else if let Some(path) = paths.first() {
            p.object = Some(path.clone());
        } else if let Some(t) = find("PROCTITLE").and_then(|r| r.fields.get("proctitle")) {
            p.object = Some(t.clone());
        }
        if !paths.is_empty() {
            p.extra.insert("paths".into(), paths.join(" "));
        }
        return p;
    }
    // User-space events: one record whose `msg='…'` fields were merged.
    p.action = first.kind.to_ascii_lowercase();
    p.outcome = match first.fields.get("res").map(String::as_str) {
        Some("success" | "1") => Outcome::Success,
        Some("failed" | "0") => Outcome::Failure,
        _ => Outcome::Unknown,
    };
    let acct = first.fields.get("acct").cloned();
    p.actor.auid = user_of(first, "auid", "AUID", users);
    p.actor.uid = first.fields.get("uid").and_then(|u| u.parse().ok());
    p.actor.user = match first.kind.as_str() {
        // For logins and authentication, acct is who logged in.
        "USER_LOGIN" | "USER_AUTH" | "USER_ACCT" | "USER_START" | "USER_END" | "CRED_ACQ" | "USER_ERR" => {
            acct.clone().or_else(|| p.actor.auid.clone())
        }
        _ => p.actor.auid.clone().or_else(|| user_of(first, "uid", "UID", users)),
    };
    p.object = match first.kind.as_str() {
        "USER_CMD" => first.fields.get("cmd").cloned(),
        _ => acct.or_else(|| first.fields.get("id").cloned()),
    };
    p.source_address = first.fields.get("addr").filter(|a| *a != "?").cloned();
    for k in ["exe", "terminal", "op", "hostname", "ses", "pid"] {
        if let Some(v) = first.fields.get(k) {
            p.extra.insert(k.into(), v.clone());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, offset: u64) -> Line {
        Line { text: text.into(), inode: 1, offset, truncated: false }
    }

    fn groups(text: &str) -> Vec<Group> {
        let mut a = Assembler::default();
        let mut out = Vec::new();
        for (i, l) in text.lines().enumerate() {
            out.extend(a.push(&line(l, i as u64)));
        }
        out.extend(a.flush());
        out
    }

    fn users() -> Users {
        users_from_passwd("root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n")
    }

    #[test]
    fn syscall_group_with_execve_path_and_hex() {
        let log = r#"type=SYSCALL msg=audit(1700000000.123:4242): arch=c000003e syscall=59 success=yes exit=0 a0=55d ppid=900 pid=901 auid=1000 uid=0 gid=0 euid=0 tty=pts0 ses=3 comm="vi" exe="/usr/bin/vim.basic" key="identity"
type=EXECVE msg=audit(1700000000.123:4242): argc=2 a0="vi" a1=2F6574632F73736820636F6E66
type=CWD msg=audit(1700000000.123:4242): cwd="/root"
type=PATH msg=audit(1700000000.123:4242): item=0 name="/usr/bin/vi" inode=1 nametype=NORMAL
type=PATH msg=audit(1700000000.123:4242): item=1 name="/lib64/ld-linux-x86-64.so.2" nametype=NORMAL
type=PROCTITLE msg=audit(1700000000.123:4242): proctitle=7669002F6574632F7373682F737368645F636F6E666967
type=EOE msg=audit(1700000000.123:4242):"#;
        let g = groups(log);
        assert_eq!(g.len(), 1);
        let e = to_event(&g[0], &users());
        assert_eq!(e.action, "exec");
        assert_eq!(e.outcome, Outcome::Success);
        assert_eq!(e.actor.user.as_deref(), Some("alice"), "the login user, not root");
        assert_eq!(e.actor.uid, Some(0));
        assert_eq!(e.object.as_deref(), Some("vi /etc/ssh conf"), "hex argument decoded");
        assert_eq!(e.extra["key"], "identity");
        assert_eq!(e.extra["uid_name"], "root");
        assert_eq!(e.extra["cwd"], "/root");
        assert_eq!(e.timestamp.unwrap().timestamp_subsec_millis(), 123);
        assert_eq!(e.extra["record_types"], "SYSCALL,EXECVE,CWD,PATH,PATH,PROCTITLE,EOE");
    }

    #[test]
    fn user_space_records_and_grouping_by_serial() {
        let log = "type=USER_LOGIN msg=audit(1700000001.000:10): pid=5 uid=0 auid=1000 ses=4 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=? addr=192.0.2.9 terminal=sshd res=failed'\n\
type=ADD_USER msg=audit(1700000002.000:11): pid=6 uid=0 auid=1000 ses=4 msg='op=add-user acct=\"mallory\" exe=\"/usr/sbin/useradd\" hostname=h addr=? terminal=pts/0 res=success'\n\
type=USER_CMD msg=audit(1700000003.000:12): pid=7 uid=1000 auid=1000 ses=4 msg='cwd=\"/\" cmd=636174202F6574632F736861646F77 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'\n\
garbage line";
        let g = groups(log);
        assert_eq!(g.len(), 4);
        let login = to_event(&g[0], &users());
        assert_eq!(
            (login.action.as_str(), login.outcome, login.source_address.as_deref()),
            ("user_login", Outcome::Failure, Some("192.0.2.9"))
        );
        let add = to_event(&g[1], &users());
        assert_eq!((add.action.as_str(), add.object.as_deref(), add.actor.user.as_deref()), ("add_user", Some("mallory"), Some("alice")));
        let cmd = to_event(&g[2], &users());
        assert_eq!((cmd.action.as_str(), cmd.object.as_deref()), ("user_cmd", Some("cat /etc/shadow")));
        let bad = to_event(&g[3], &users());
        assert_eq!(bad.extra["parse_error"], "not an audit record");
    }

    #[test]
    fn unset_auid_and_unknown_uid() {
        let g =
            groups("type=SYSCALL msg=audit(1.0:1): syscall=2 success=no auid=4294967295 uid=4321 comm=\"x\"\ntype=EOE msg=audit(1.0:1):");
        let e = to_event(&g[0], &users());
        assert_eq!(e.actor.auid, None);
        assert_eq!(e.actor.user.as_deref(), Some("4321"));
        assert_eq!(e.outcome, Outcome::Failure);
    }

    #[test]
    fn quoted_values_are_never_hex_decoded() {
        let r = parse_record("type=SYSCALL msg=audit(1.0:1): comm=\"CAFE\" exe=2F62696E2F7368").unwrap();
        assert_eq!((r.fields["comm"].as_str(), r.fields["exe"].as_str()), ("CAFE", "/bin/sh"));
    }

    #[test]
    fn hex_only_when_it_is_hex() {
        assert_eq!(decode_hex("2F746D70"), "/tmp");
        assert_eq!(decode_hex("/tmp"), "/tmp");
        assert_eq!(decode_hex("abc"), "abc");
        assert_eq!(decode_hex("deadbeef"), "deadbeef", "lower-case hex is a plain word");
    }
}
