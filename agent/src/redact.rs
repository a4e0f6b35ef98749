//! Redaction: no secret leaves the host. Applied to every audit event
//! (raw line, object, extra fields) and every string fact before shipping.
//!
//! Replaced by [`MARKER`]: PEM private key blocks (and the key material of
//! one logged across several lines: long mixed-case base64 runs), crypt(3)
//! password hashes (`$1$`, `$2b$`, `$5$`, `$6$`, `$y$`, `$gy$`,
//! `$argon2…$`), the value in `key=value` / `key: value` / `"key": value` /
//! `--key value` pairs whose key looks secret (password, passwd, pwd,
//! secret, token, api key, private key, credential, auth), `Bearer` and
//! `Basic` credentials, `mysql -pX`, `sshpass -p X`, `user:password@` and
//! signatures in URLs, JWTs and tokens with a known prefix (GitHub, GitLab,
//! Slack, Stripe, AWS key ids, Google API keys, Slack webhook paths); plus
//! configured extra patterns. Hex-encoded auditd values (`proctitle=`,
//! `cmd=`, `a1=`) are decoded first: one that held a secret is replaced by
//! its redacted text. A Kubernetes audit event about a Secret loses its
//! request and response bodies. A fact whose name says it is a secret
//! (`….password`, `….token`) keeps only a status word (`set`, `locked`…).

use std::sync::LazyLock;

use driftwatch_schemas::{AuditEvent, FactPath, FactValue, Message};
use regex::Regex;
use serde::Deserialize;

pub const MARKER: &str = "[REDACTED]";

static BUILTIN: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", "[REDACTED]"),
        (r"\$(1|2[abxy]?|5|6|y|gy|7|argon2(id|i|d)?)\$[^\s:'\x22]+", "[REDACTED]"),
        (
            r"(?i)(--(?:password|passwd|pass|passphrase|token|secret|api-key|apikey|access-key|secret-key|client-secret|auth-token|private-key)[= ])(\S+)",
            "$1[REDACTED]",
        ),
        (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]+@", "$1:[REDACTED]@"),
        (r"(?i)\b([a-z0-9_]*pass)(\s*[=:]\s*)[^\s,;&]+", "$1$2[REDACTED]"),
        (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}", "$1 [REDACTED]"),
        (r"(?i)\b((?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p)[^\s-]\S*", "$1[REDACTED]"),
        (r"(?i)\b(sshpass\s+-p)\s*\S+", "$1 [REDACTED]"),
        (r"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|sas|code)=)[^&\s\x22']+", "$1[REDACTED]"),
        (r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "[REDACTED]"),
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35})\b",
            "[REDACTED]",
        ),
        (r"(hooks\.slack\.com/services/)[A-Za-z0-9/]+", "$1[REDACTED]"),
    ]
    .into_iter()
    .map(|(p, r)| (crate::memory::regex(p).expect("built-in redaction pattern compiles"), r))
    .collect()
});

/// `key=value`, `key: value`, `"key": value`, `key value` where the key
/// looks secret.
static SECRET_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r"(?i)\b((?:[a-z0-9_.-]*?)(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization)[a-z0-9_.-]*)(\x22?\s*[=:]\s*|\s+)(\x22[^\x22]*\x22|'[^']*'|[^\s,;&]+)")
        .expect("built-in redaction pattern compiles")
});

/// A run of base64 long enough to be key material (a line of a PEM key,
/// a token): told from a hex digest or a path by needing upper- and
/// lower-case letters and a digit.
static BLOB: LazyLock<Regex> =
    LazyLock::new(|| crate::memory::regex(r"[A-Za-z0-9+/_-]{40,}={0,2}").expect("built-in redaction pattern compiles"));

/// An auditd value hex-encoded because it held spaces or quotes (a
/// command line, a title): unquoted, upper-case, even-length.
static HEX_FIELD: LazyLock<Regex> =
    LazyLock::new(|| crate::memory::regex(r"\b([a-z][a-z0-9_]*=)([0-9A-F]{8,})\b").expect("built-in redaction pattern compiles"));

/// A fact's last name segment that says its value is a secret.
static SECRET_FACT: LazyLock<Regex> = LazyLock::new(|| {
    crate::memory::regex(r#"(?i)(^|[_.-])(password|passwd|passphrase|secret|token|api_?key|private_?key|credentials?)"?\]?$"#)
        .expect("built-in redaction pattern compiles")
});

/// What the agent writes for a secret it reads without shipping it: kept.
const STATUS_WORDS: [&str; 10] = ["set", "empty", "locked", "none", "yes", "no", "true", "false", "present", "absent"];

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
        let out = self.plain(s);
        // Hex-encoded auditd values: a secret in one is replaced by the
        // redacted text, quoted as auditd quotes values.
        if !HEX_FIELD.is_match(&out) {
            return out;
        }
        HEX_FIELD
            .replace_all(&out, |c: &regex::Captures| {
                let decoded = crate::audit::auditd::decode_hex(&c[2]);
                if decoded == c[2] {
                    return c[0].to_string();
                }
                let redacted = self.plain(&decoded);
                if redacted == decoded {
                    c[0].to_string()
                } else {
                    format!("{}\x22{}\x22", &c[1], redacted.replace('"', "'"))
                }
            })
            .into_owned()
    }

    /// [`Self::text`] without the hex decoding.
    fn plain(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (re, rep) in BUILTIN.iter() {
            if re.is_match(&out) {
                out = re.replace_all(&out, *rep).into_owned();
            }
        }
        if SECRET_PAIR.is_match(&out) {
            out = SECRET_PAIR
                .replace_all(&out, |c: &regex::Captures| {
                    // A plural before a space names things, not a
                    // value ("secrets prod/db", "tokens revoked").
                    let named = c[2].trim().is_empty() && c[1].ends_with(['s', 'S']);
                    if NOT_SECRET.contains(&&c[1]) || named {
                        c[0].to_string()
                    } else if c[3].starts_with('"') {
                        format!("{}{}\"{MARKER}\"", &c[1], &c[2])
                    } else {
                        format!("{}{}{MARKER}", &c[1], &c[2])
                    }
                })
                .into_owned();
        }
        if BLOB.is_match(&out) {
            out = BLOB
                .replace_all(&out, |c: &regex::Captures| {
                    let b = &c[0];
                    let mixed = b.bytes().any(|x| x.is_ascii_uppercase())
                        && b.bytes().any(|x| x.is_ascii_lowercase())
                        && b.bytes().any(|x| x.is_ascii_digit());
                    if mixed {
                        MARKER.to_string()
                    } else {
                        b.to_string()
                    }
                })
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
        if e.source == driftwatch_schemas::AuditSource::K8sAudit {
            e.raw = k8s_without_secret_bodies(&e.raw);
        }
        e.raw = self.text(&e.raw);
        if let Some(o) = e.object.as_mut() {
            let redacted = self.text(o);
            if redacted != *o && e.source == driftwatch_schemas::AuditSource::Auditd {
                // The command line held a secret that its EXECVE record
                // spreads over one field per argument (`a1="-p" a2="…"`),
                // where no rule sees it: those fields give way to the
                // redacted command line.
                e.raw = execve_args_replaced(&e.raw, &redacted);
            }
            *o = redacted;
        }
        for v in e.extra.values_mut() {
            *v = self.text(v);
        }
    }

    /// Redacts everything a message carries that could hold a secret.
    pub fn message(&self, m: &mut Message) {
        match m {
            Message::Snapshot(s) => s.facts.iter_mut().for_each(|f| {
                if SECRET_FACT.is_match(&f.path) {
                    secret_fact(&mut f.value);
                }
                match &mut f.value {
                    FactValue::Str(text) if FactPath::names_json_object(&f.path) => *text = self.json(text),
                    value => self.fact(value),
                }
            }),
            Message::Audit(e) => self.event(e),
            Message::Sla(x) => {
                if let Some(e) = x.error.as_mut() {
                    *e = self.text(e);
                }
                x.target = self.text(&x.target);
            }
        }
    }

    /// A JSON text redacted value by value, so that it stays JSON: every
    /// string as [`Self::text`] redacts it, and the string value of a key
    /// that says it is a secret replaced whole. Text that is not JSON is
    /// redacted as text.
    pub fn json(&self, text: &str) -> String {
        fn walk(r: &Redactor, v: &mut serde_json::Value) {
            match v {
                serde_json::Value::String(s) => *s = r.text(s),
                serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(r, x)),
                serde_json::Value::Object(m) => {
                    for (k, x) in m.iter_mut() {
                        match x {
                            serde_json::Value::String(s)
                                if is_secret_name(k) && !STATUS_WORDS.contains(&s.to_ascii_lowercase().as_str()) =>
                            {
                                *s = MARKER.to_string()
                            }
                            _ => walk(r, x),
                        }
                    }
                }
                _ => {}
            }
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(mut v) => {
                walk(self, &mut v);
                v.to_string()
            }
            Err(_) => self.text(text),
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

/// `raw` with the argument fields of its EXECVE records replaced by one
/// `args="<command line>"`.
fn execve_args_replaced(raw: &str, command_line: &str) -> String {
    static ARG: LazyLock<Regex> =
        LazyLock::new(|| crate::memory::regex(r#"\s+a\d+(\[\d+\])?=("[^"]*"|\S+)"#).expect("built-in redaction pattern compiles"));
    raw.lines()
        .map(|l| {
            if l.starts_with("type=EXECVE") {
                format!("{} args=\"{}\"", ARG.replace_all(l, ""), command_line.replace('"', "'"))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a name (an environment variable's, a key's) says that its value
/// is a secret: `DB_PASSWORD`, `api_token`, `privateKey`… (not `PWD`).
pub fn is_secret_name(name: &str) -> bool {
    static CAMEL: LazyLock<Regex> = LazyLock::new(|| {
        crate::memory::regex(r"(Password|Passwd|Passphrase|Secret|Token|ApiKey|PrivateKey|Credentials?)$")
            .expect("built-in redaction pattern compiles")
    });
    !NOT_SECRET.contains(&name) && (SECRET_FACT.is_match(name) || CAMEL.is_match(name))
}

/// A fact named as a secret keeps only a status word. (A list under such
/// a name lists things, not a secret: `accounts.empty_password` is the
/// accounts without one.)
fn secret_fact(v: &mut FactValue) {
    if let FactValue::Str(s) = v {
        if !STATUS_WORDS.contains(&s.to_ascii_lowercase().as_str()) {
            *s = MARKER.to_string();
        }
    }
}

/// A Kubernetes audit event (one JSON line) about a Secret, with its
/// request and response bodies replaced by the marker: they hold the
/// secret's `data`. Any other line is returned as it is.
fn k8s_without_secret_bodies(raw: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(raw) else {
        // A line cut short (too long for the tailer) does not parse: about
        // a Secret, nothing after its bodies start is kept.
        if raw.contains("\"resource\":\"secrets\"") {
            if let Some(at) = ["\"requestObject\"", "\"responseObject\""].iter().filter_map(|k| raw.find(k)).min() {
                return format!("{}{MARKER}", &raw[..at]);
            }
        }
        return raw.to_string();
    };
    let about_secrets = v["objectRef"]["resource"] == "secrets"
        || v["requestObject"]["kind"] == "Secret"
        || v["responseObject"]["kind"] == "Secret"
        || v["responseObject"]["kind"] == "SecretList";
    if !about_secrets {
        return raw.to_string();
    }
    for body in ["requestObject", "responseObject"] {
        if let Some(b) = v.get_mut(body) {
            *b = serde_json::Value::String(MARKER.into());
        }
    }
    v.to_string()
}

/// Redaction of secrets before anything is shipped (built-in patterns are
/// always on; see `redact.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Extra regular expressions; every match is replaced.
    pub patterns: Vec<String>,
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
            ("db_password: \"s3 cr3t\"", "db_password: \"[REDACTED]\""),
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
    use crate::audit::{auditd, auditd_event, authlog_event, journald, k8s_event, tail::Line};
    use driftwatch_schemas::{Asset, AssetKind, Fact, FactValue, Message};

    fn asset() -> Asset {
        Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: Default::default() }
    }

    /// A full snapshot of these facts, as the agent ships it.
    fn snapshot_of(facts: Vec<Fact>) -> Message {
        Message::Snapshot(driftwatch_schemas::ConfigSnapshot {
            asset: asset(),
            agent_id: "x".into(),
            agent_version: "0".into(),
            snapshot_id: "s".into(),
            sequence: 1,
            collected_at: chrono::Utc::now(),
            kind: driftwatch_schemas::SnapshotKind::Full,
            facts,
            removed_paths: vec![],
        })
    }

    fn line(i: usize, text: &str) -> Line {
        Line { text: text.into(), inode: 1, offset: i as u64, truncated: false }
    }

    /// An event as the agent ships it, written out whole.
    fn shipped(r: &Redactor, e: driftwatch_schemas::AuditEvent) -> String {
        let mut m = Message::Audit(e);
        r.message(&mut m);
        let Message::Audit(e) = m else { unreachable!() };
        format!("{} {:?} {:?} {:?}\n", e.raw, e.object, e.extra, e.actor)
    }

    /// The corpus: every line of the four sources' fixtures, through its
    /// parser and the redactor, as the agent would ship it.
    fn corpus() -> String {
        let r = Redactor::default();
        let mut out = String::new();
        for (i, l) in include_str!("../../tests/fixtures/logs/secrets-auth.log").lines().enumerate() {
            out += &shipped(&r, authlog_event(&asset(), "/var/log/auth.log", &line(i, l)));
        }
        let mut assembler = auditd::Assembler::default();
        let users = auditd::users_from_passwd("");
        let mut groups = Vec::new();
        for (i, l) in include_str!("../../tests/fixtures/logs/secrets-auditd.log").lines().enumerate() {
            groups.extend(assembler.push(&line(i, l)));
        }
        groups.extend(assembler.flush());
        assert!(groups.len() >= 6, "{} record groups", groups.len());
        for g in &groups {
            out += &shipped(&r, auditd_event(&asset(), "/var/log/audit/audit.log", g, &users));
        }
        for l in include_str!("../../tests/fixtures/logs/secrets-journald.json").lines() {
            out += &shipped(&r, journald::event(&asset(), &journald::parse(l).expect("journal JSON")));
        }
        for (i, l) in include_str!("../../tests/fixtures/logs/secrets-k8s-audit.log").lines().enumerate() {
            out += &shipped(&r, k8s_event(&asset(), "/var/log/kube-audit.log", &line(i, l)));
        }
        out
    }

    #[test]
    fn no_secret_of_the_corpus_survives() {
        let secrets: Vec<&str> =
            include_str!("../../tests/fixtures/logs/secrets.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        assert!(secrets.len() >= 40, "at least 40 secret shapes: {}", secrets.len());
        let out = corpus();
        let leaked: Vec<&&str> = secrets.iter().filter(|s| out.contains(**s)).collect();
        assert!(leaked.is_empty(), "leaked: {leaked:?}\n{out}");
    }

    #[test]
    fn what_is_not_secret_is_kept() {
        let out = corpus();
        for kept in [
            "alice",
            "/usr/bin/mysql",
            "internal.example.org",
            "192.0.2.7",
            "PWD=/root",
            "NOPASSWD",
            "/usr/bin/apt-get upgrade",
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "LOG_LEVEL",
            "secrets prod/db",
            "op=PAM:authentication",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
    }

    #[test]
    fn facts_named_as_secrets_keep_only_a_status_word() {
        let r = Redactor::default();
        let mut m = snapshot_of(vec![
            Fact { path: "env.DB_PASSWORD".into(), value: "factS3cretValue".into() },
            Fact { path: r#"app["api_token"]"#.into(), value: "factTok3n".into() },
            Fact { path: "accounts.user.root.password".into(), value: "locked".into() },
            Fact { path: "accounts.empty_password".into(), value: FactValue::List(vec!["guest".into()]) },
            Fact { path: "sshd.config.passwordauthentication".into(), value: "no".into() },
            Fact { path: "sshd.config.permitemptypasswords".into(), value: "no".into() },
        ]);
        r.message(&mut m);
        let Message::Snapshot(s) = m else { unreachable!() };
        let values: Vec<String> = s.facts.iter().map(|f| f.value.to_json()).collect();
        assert_eq!(values, ["\"[REDACTED]\"", "\"[REDACTED]\"", "\"locked\"", "[\"guest\"]", "\"no\"", "\"no\""]);
    }

    #[test]
    fn an_object_fact_is_redacted_field_by_field_and_stays_json() {
        let r = Redactor::default();
        let object = serde_json::json!({
            "metadata": {"name": "web", "annotations": {"note": "Authorization: Bearer abcdefghijklmnop"}},
            "spec": {"containers": [{"name": "web", "args": ["--password=hunter2"], "env": [{"name": "LOG_LEVEL", "value": "info"}]}],
                     "apiToken": "t0k3n-value", "privateKey": "present"}
        });
        let mut m = snapshot_of(vec![Fact { path: r#"k8s.objects.pods["app/web"]"#.into(), value: object.to_string().into() }]);
        r.message(&mut m);
        let Message::Snapshot(s) = m else { unreachable!() };
        let FactValue::Str(text) = &s.facts[0].value else { panic!("a string") };
        let got: serde_json::Value = serde_json::from_str(text).expect("still JSON");
        let note = got["metadata"]["annotations"]["note"].as_str().unwrap();
        assert!(note.starts_with("Authorization: ") && !note.contains("abcdefghijklmnop"), "{note}");
        assert_eq!(got["spec"]["containers"][0]["args"][0], "--password=[REDACTED]");
        assert_eq!(got["spec"]["containers"][0]["env"][0]["value"], "info");
        assert_eq!(got["spec"]["apiToken"], MARKER, "a key named as a secret");
        assert_eq!(got["spec"]["privateKey"], "present", "a status word stays");
        for (name, secret) in [("DB_PASSWORD", true), ("api_token", true), ("clientSecret", true), ("PWD", false), ("TOKEN_URL", false)] {
            assert_eq!(is_secret_name(name), secret, "{name}");
        }
    }
}
