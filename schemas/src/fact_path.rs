//! Fact paths: the names of configuration facts.
//!
//! A fact path is written exactly as the CEL expression that reads it, so a
//! policy author can copy a path from `driftwatch-agent snapshot` output
//! into a check: `sshd.config.permitrootlogin`, `files["/etc/shadow"].mode`.
//! Segments that are CEL identifiers are joined with `.`; any other segment
//! is a quoted map key in brackets.

use std::fmt;

/// A parsed fact path: a non-empty list of segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FactPath(Vec<String>);

/// Why a string is not a fact path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fact path {path:?} at byte {at}: {reason}")]
pub struct FactPathError {
    pub path: String,
    pub at: usize,
    pub reason: &'static str,
}

impl FactPath {
    /// Builds a path from segments. The first segment must be an identifier
    /// (it becomes a CEL variable).
    pub fn new<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        FactPath(segments.into_iter().map(Into::into).collect())
    }

    /// Returns a new path with `segment` appended.
    pub fn child(&self, segment: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment.into());
        FactPath(segments)
    }

    /// The segments, owned.
    pub fn into_segments(self) -> Vec<String> {
        self.0
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether this fact holds an API object as JSON text:
    /// `k8s.objects.<resource>["<namespace>/<name>"]`, what the cluster
    /// agent ships of the resources of its `cluster.objects`. Redaction
    /// works on such a value field by field (it stays JSON), and the
    /// collector hands CEL the object itself, not its text.
    pub fn is_json_object(&self) -> bool {
        matches!(self.0.as_slice(), [k8s, objects, _, _] if k8s == "k8s" && objects == "objects")
    }

    /// [`Self::is_json_object`] of a path's text, without parsing any path
    /// outside `k8s.objects` (every fact of every snapshot is asked).
    pub fn names_json_object(text: &str) -> bool {
        text.starts_with("k8s.objects.") && FactPath::parse(text).is_ok_and(|p| p.is_json_object())
    }

    /// Whether `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &FactPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Parses the textual form.
    pub fn parse(text: &str) -> Result<Self, FactPathError> {
        let mut segments = Vec::new();
        scan(text, |raw, quoted| {
            segments.push(if quoted && raw.contains('\\') { unescape(raw) } else { raw.to_string() });
        })?;
        Ok(FactPath(segments))
    }

    /// How many segments `text` has, without building them (what the
    /// collector's decode limits check on every fact).
    pub fn depth(text: &str) -> Result<usize, FactPathError> {
        let mut n = 0;
        scan(text, |_, _| n += 1)?;
        Ok(n)
    }

    /// The textual form `text` parses to, written the one way
    /// [`Display`](fmt::Display) writes it (`a["b"]` is `a.b`): facts are
    /// keyed by it, so that a fact sent as `a["b"]` is found under `a`.
    /// `text` itself, not copied, when it is written that way already.
    pub fn canonical(text: &str) -> Result<std::borrow::Cow<'_, str>, FactPathError> {
        let mut written_so = true;
        // A quoted key that is an identifier is written with a dot; a
        // quoted key's escapes are the only ones `Display` writes.
        scan(text, |raw, quoted| written_so &= !(quoted && is_identifier(raw)))?;
        Ok(if written_so { std::borrow::Cow::Borrowed(text) } else { std::borrow::Cow::Owned(FactPath::parse(text)?.to_string()) })
    }
}

/// Walks the segments of `text`, calling `segment` with each one's text
/// (a quoted key still escaped) and whether it was quoted.
fn scan<'t>(text: &'t str, mut segment: impl FnMut(&'t str, bool)) -> Result<(), FactPathError> {
    let err = |at, reason| FactPathError { path: text.to_string(), at, reason };
    let bytes = text.as_bytes();
    let ident_end = |mut j: usize| {
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
            j += 1;
        }
        j
    };
    // The first segment must be an identifier.
    if bytes.is_empty() || !(bytes[0].is_ascii_alphabetic() || bytes[0] == b'_') {
        return Err(err(0, "a fact path starts with an identifier"));
    }
    let mut i = ident_end(0);
    segment(&text[..i], false);
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                let start = i + 1;
                if start >= bytes.len() || !(bytes[start].is_ascii_alphabetic() || bytes[start] == b'_') {
                    return Err(err(start, "expected an identifier after '.'"));
                }
                i = ident_end(start);
                segment(&text[start..i], false);
            }
            b'[' => {
                if bytes.get(i + 1) != Some(&b'"') {
                    return Err(err(i + 1, "expected '\"' after '['"));
                }
                let start = i + 2;
                let mut j = start;
                let close = loop {
                    match bytes.get(j) {
                        None => return Err(err(text.len(), "unterminated string")),
                        Some(b'"') => break j,
                        Some(b'\\') => match bytes.get(j + 1) {
                            Some(b'"' | b'\\') => j += 2,
                            _ => return Err(err(start, "only \\\" and \\\\ escapes are allowed")),
                        },
                        Some(_) => j += 1,
                    }
                };
                if bytes.get(close + 1) != Some(&b']') {
                    return Err(err(close + 1, "expected ']'"));
                }
                segment(&text[start..close], true);
                i = close + 2;
            }
            _ => return Err(err(i, "expected '.' or '['")),
        }
    }
    Ok(())
}

/// A quoted key without its escapes (`\"` and `\\`).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for FactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            if i > 0 && is_identifier(seg) {
                write!(f, ".{seg}")?;
            } else if i == 0 {
                f.write_str(seg)?;
            } else {
                f.write_str("[\"")?;
                for c in seg.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"]")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for FactPath {
    type Err = FactPathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FactPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_identifiers_and_keys() {
        let p = FactPath::new(["files", "/etc/ssh/sshd_config", "mode"]);
        assert_eq!(p.to_string(), r#"files["/etc/ssh/sshd_config"].mode"#);
        assert_eq!(FactPath::parse(&p.to_string()).unwrap(), p);
        let q = FactPath::new(["sshd", "config", "permitrootlogin"]);
        assert_eq!(q.to_string(), "sshd.config.permitrootlogin");
        assert_eq!(FactPath::parse("sshd.config.permitrootlogin").unwrap(), q);
    }

    #[test]
    fn escapes_quotes_and_backslashes() {
        let p = FactPath::new(["x", "a\"b\\c"]);
        assert_eq!(p.to_string(), r#"x["a\"b\\c"]"#);
        assert_eq!(FactPath::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn rejects_malformed_paths_with_position() {
        for (bad, at) in [("", 0), ("1a", 0), ("a.", 2), ("a[x]", 2), ("a[\"x", 4), ("a b", 1), ("a[\"x\"", 5)] {
            let e = FactPath::parse(bad).unwrap_err();
            assert_eq!(e.at, at, "{bad:?}: {e}");
        }
    }

    #[test]
    fn canonical_text_is_what_display_writes() {
        for text in ["sshd.config.x", r#"files["/etc/shadow"].mode"#, r#"x["a\"b\\c"]"#, r#"packages.version["lib-1"]"#] {
            assert!(matches!(FactPath::canonical(text), Ok(std::borrow::Cow::Borrowed(t)) if t == text), "{text}");
        }
        for (text, canonical) in [(r#"sshd["config"].x"#, "sshd.config.x"), (r#"a["b"]["/c"]["d_1"]"#, r#"a.b["/c"].d_1"#)] {
            assert_eq!(FactPath::canonical(text).unwrap(), canonical);
            assert_eq!(FactPath::parse(text).unwrap().to_string(), canonical);
        }
        assert_eq!(FactPath::canonical("a[x]").unwrap_err().at, 2);
    }

    #[test]
    fn prefix_test() {
        let p = FactPath::parse("sshd.config.x").unwrap();
        assert!(p.starts_with(&FactPath::parse("sshd").unwrap()));
        assert!(p.starts_with(&p));
        assert!(!p.starts_with(&FactPath::parse("sshd.configx").unwrap()));
    }
}
