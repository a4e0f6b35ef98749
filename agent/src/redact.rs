//! Redaction: no secret leaves the host. Applied to every audit event
//! (raw line, object, extra fields) and every string fact before shipping.
//!
//! Replaced by [`MARKER`]: PEM private key blocks, crypt(3) password hashes
//! (`$1$`, `$2b$`, `$5$`, `$6$`, `$y$`, `$gy$`, `$argon2…$`), the value in
//! `key=value` / `key: value` / `--key value` pairs whose key looks secret
//! (password, passwd, pwd, secret, token, api key, private key, credential,
//! auth), and `user:password@` in URLs; plus configured extra patterns.

use std::sync::LazyLock;

use driftwatch_schemas::{AuditEvent, FactValue, Message};
use regex::Regex;

pub const MARKER: &str = "[REDACTED]";

static BUILTIN: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", "[REDACTED]"),
        (r"\$(1|2[abxy]?|5|6|y|gy|7|argon2(id|i|d)?)\$[^\s:'\x22]+", "[REDACTED]"),
        (r"(?i)(--(?:password|passwd|token|secret|api-key)[= ])(\S+)", "$1[REDACTED]"),
        (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@", "$1:[REDACTED]@"),
    ]
    .into_iter()
    .map(|(p, r)| (crate::memory::regex(p).expect("built-in redaction pattern compiles"), r))
    .collect()
});

/// `key=value`, `key: value`, `key value` where the key looks secret.
static SECRET_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r"(?i)\b((?:[a-z0-9_.-]*?)(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization)[a-z0-9_.-]*)(\s*[=:]\s*|\s+)(\x22[^\x22]*\x22|'[^']*'|[^\s,;&]+)")
        .expect("built-in redaction pattern compiles")
});

/// Keys that look secret but are not: the working directory variables
/// that sudo and shells log, and sudoers' password tags (`NOPASSWD: ALL`).
const NOT_SECRET: [&str; 4] = ["PWD", "OLDPWD", "NOPASSWD", "PASSWD"];

/// Redacts with the built-in patterns and any extra ones.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl Redactor {
    /// `extra` are regular expressions whose every match is replaced.
    pub fn new(extra: &[String]) -> Result<Self, String> {
        let extra = extra
            .iter()
            .enumerate()
            .map(|(i, p)| crate::memory::regex(p).map_err(|e| format!("redact.patterns[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Redactor { extra })
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (re, rep) in BUILTIN.iter() {
            if re.is_match(&out) {
                out = re.replace_all(&out, *rep).into_owned();
            }
        }
        if SECRET_PAIR.is_match(&out) {
            out = SECRET_PAIR
                .replace_all(
                    &out,
                    |c: &regex::Captures| {
                        if NOT_SECRET.contains(&&c[1]) {
                            c[0].to_string()
                        } else {
                            format!("{}{}{MARKER}", &c[1], &c[2])
                        }
                    },
                )
                .into_owned();
        }
        for re in &self.extra {
            if re.is_match(&out) {
                out = re.replace_all(&out, MARKER).into_owned();
            }
        }
        out
    }

    pub fn event(&self, e: &mut AuditEvent) {
        e.raw = self.text(&e.raw);
        if let Some(o) = e.object.as_mut() {
            *o = self.text(o);
        }
        for v in e.extra.values_mut() {
            *v = self.text(v);
        }
    }

    /// Redacts everything a message carries that could hold a secret.
    pub fn message(&self, m: &mut Message) {
        match m {
            Message::Snapshot(s) => s.facts.iter_mut().for_each(|f| self.fact(&mut f.value)),
            Message::Audit(e) => self.event(e),
            Message::Sla(x) => {
                if let Some(e) = x.error.as_mut() {
                    *e = self.text(e);
                }
                x.target = self.text(&x.target);
            }
        }
    }

    pub fn fact(&self, v: &mut FactValue) {
        match v {
            FactValue::Str(s) => *s = self.text(s),
            FactValue::List(l) => l.iter_mut().for_each(|s| *s = self.text(s)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_lines_are_replaced() {
        let r = Redactor::new(&["ACME-[0-9]{6}".into()]).unwrap();
        let cases = [
            ("mysql -u root --password=hunter2 db", "--password=[REDACTED]"),
            ("export API_KEY=abc123def; ls", "API_KEY=[REDACTED];"),
            ("db_password: \"s3 cr3t\"", "db_password: [REDACTED]"),
            ("token abcdef0123", "token [REDACTED]"),
            ("root:$6$rounds=5000$salt$hashvalue:19000:0:99999:7:::", "root:[REDACTED]:19000"),
            ("curl https://bob:pa55@example.org/x", "https://bob:[REDACTED]@example.org"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----", "[REDACTED]"),
            ("license ACME-123456 ok", "license [REDACTED] ok"),
        ];
        for (input, want) in cases {
            let out = r.text(input);
            assert!(out.contains(want), "{input:?} → {out:?}");
        }
        for (input, _) in cases {
            let out = r.text(input);
            for secret in ["hunter2", "abc123def", "s3 cr3t", "abcdef0123", "hashvalue", "pa55", "b3BlbnNzaC1rZXk", "123456"] {
                assert!(!out.contains(secret), "{secret} leaked in {out:?}");
            }
        }
    }

    #[test]
    fn harmless_lines_are_untouched() {
        let r = Redactor::default();
        for s in [
            "Accepted publickey for alice from 192.0.2.1 port 22 ssh2",
            "PermitRootLogin no",
            "sudo: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
            "bob ALL=(ALL) NOPASSWD: ALL",
            "%admin ALL=(ALL) PASSWD: /usr/bin/apt",
        ] {
            assert_eq!(r.text(s), s);
        }
    }

    #[test]
    fn bad_extra_pattern_names_its_index() {
        assert_eq!(Redactor::new(&["ok".into(), "(".into()]).unwrap_err().split(':').next(), Some("redact.patterns[1]"));
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::audit::{authlog_event, tail::Line};
    use driftwatch_schemas::{Asset, AssetKind, Message};

    /// Every line of a log full of secrets, as the agent would ship it.
    #[test]
    fn no_secret_from_the_fixture_survives() {
        let text = include_str!("../../tests/fixtures/logs/secrets-auth.log");
        let asset = Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() };
        let r = Redactor::default();
        let mut shipped = String::new();
        for (i, l) in text.lines().enumerate() {
            let mut m = Message::Audit(authlog_event(
                &asset,
                "/var/log/auth.log",
                &Line { text: l.into(), inode: 1, offset: i as u64, truncated: false },
            ));
            r.message(&mut m);
            let Message::Audit(e) = m else { unreachable!() };
            shipped.push_str(&format!("{} {:?} {:?}\n", e.raw, e.object, e.extra));
        }
        for secret in
            ["Sup3rS3cret", "tok_live_9f8e7d6c5b4a", "LeakedHashValue", "hunter2", "battery staple", "AKIAEXAMPLEKEY", "leakedkeymaterial"]
        {
            assert!(!shipped.contains(secret), "{secret} leaked:\n{shipped}");
        }
        // What is not secret is kept: who, what, from where.
        for kept in ["alice", "/usr/bin/mysql", "internal.example.org", "192.0.2.7", "PWD=/root"] {
            assert!(shipped.contains(kept), "{kept} lost:\n{shipped}");
        }
    }
}
