//! `content["<path>"].*`: what a file says, for the files the `facts.content`
//! setting names, so a policy pack can check a setting no fact family reads
//! without an agent release. A file is read as lines (`parse: lines`: the
//! lines that are neither empty nor comments, trimmed) or as key/values
//! (`parse: key_value`: `key = value`, `key: value` or `key value` lines;
//! the last of a repeated key wins). Values pass the agent's redaction
//! like every fact (a key named like a secret keeps only a status word).
//! Bounded: a file over [`MAX_BYTES`] is not read, and at most
//! [`MAX_LINES`] lines are kept (`content.errors` says so). No command is
//! ever run.

use driftwatch_schemas::FactPath;
use serde::Deserialize;

use super::Facts;
use crate::root::HostRoot;

/// The largest file read.
pub const MAX_BYTES: usize = 256 << 10;
/// The most lines or keys kept of one file.
pub const MAX_LINES: usize = 5_000;

/// One file to report the content of (`facts.content`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContentFile {
    /// Absolute host path.
    pub path: String,
    /// `lines` or `key_value`.
    pub parse: Parse,
    /// The character that starts a comment line (default `#`).
    #[serde(default = "default_comment")]
    pub comment: String,
}

fn default_comment() -> String {
    "#".into()
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Parse {
    Lines,
    KeyValue,
}

pub fn collect(root: &HostRoot, files: &[ContentFile], facts: &mut Facts) {
    for f in files {
        let at = |leaf: &str| FactPath::new(["content".to_string(), f.path.clone(), leaf.to_string()]);
        let size = match root.metadata(&f.path) {
            Ok(Some(m)) => m.len(),
            Ok(None) => {
                facts.set(&at("exists"), false);
                continue;
            }
            Err(e) => {
                facts.error("content", format!("{}: {e}", f.path));
                continue;
            }
        };
        facts.set(&at("exists"), true);
        if size > MAX_BYTES as u64 {
            facts.error("content", format!("{}: {size} bytes, more than {MAX_BYTES}; not read", f.path));
            continue;
        }
        let text = match root.read_to_string(&f.path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                facts.error("content", format!("{}: {e}", f.path));
                continue;
            }
        };
        let comment = f.comment.trim();
        let lines: Vec<&str> =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && (comment.is_empty() || !l.starts_with(comment))).collect();
        if lines.len() > MAX_LINES {
            facts.error("content", format!("{}: {} lines; the first {MAX_LINES} are reported", f.path, lines.len()));
        }
        let lines = &lines[..lines.len().min(MAX_LINES)];
        match f.parse {
            Parse::Lines => facts.set(&at("lines"), lines.iter().map(|l| l.to_string()).collect::<Vec<_>>()),
            Parse::KeyValue => {
                for line in lines {
                    let (key, value) = split_pair(line);
                    if !key.is_empty() {
                        facts.set(&FactPath::new(["content".to_string(), f.path.clone(), "values".to_string(), key.to_string()]), value);
                    }
                }
            }
        }
    }
}

/// `key = value`, `key: value` or `key value` (the first of `=`, `:` or
/// whitespace separates; quotes around the value are removed).
fn split_pair(line: &str) -> (&str, &str) {
    let at = line.find(['=', ':', ' ', '\t']).unwrap_or(line.len());
    let key = line[..at].trim();
    let rest = line[at..].trim_start();
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest).trim();
    let value = rest.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(rest);
    (key, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::testing::tree;

    fn file(path: &str, parse: Parse) -> ContentFile {
        ContentFile { path: path.into(), parse, comment: "#".into() }
    }

    #[test]
    fn lines_and_key_values_are_reported_as_a_pack_reads_them() {
        let (_d, root) = tree(&[
            ("/etc/security/pwquality.conf", "# comment\nminlen = 14\n  dcredit=-1\nucredit: -1\nretry 3\nminlen = 15\nenforcing=\"1\"\n"),
            ("/etc/hosts.deny", "# nothing\nALL: ALL\n\nsshd: 10.0.0.1\n"),
        ]);
        let mut f = Facts::default();
        collect(
            &root,
            &[
                file("/etc/security/pwquality.conf", Parse::KeyValue),
                file("/etc/hosts.deny", Parse::Lines),
                file("/etc/none", Parse::Lines),
            ],
            &mut f,
        );
        let v = |k: &str| f.0[&format!(r#"content["/etc/security/pwquality.conf"].values.{k}"#)].clone();
        assert_eq!(
            (v("minlen"), v("dcredit"), v("ucredit"), v("retry"), v("enforcing")),
            ("15".into(), "-1".into(), "-1".into(), "3".into(), "1".into())
        );
        assert_eq!(f.0[r#"content["/etc/hosts.deny"].lines"#], vec!["ALL: ALL".to_string(), "sshd: 10.0.0.1".into()].into());
        assert_eq!(f.0[r#"content["/etc/none"].exists"#], false.into());
        assert!(!f.0.contains_key("content.errors"));
    }

    #[test]
    fn large_files_are_bounded() {
        let big = "x\n".repeat(MAX_LINES + 10);
        let huge = "y".repeat(MAX_BYTES + 1);
        let (_d, root) = tree(&[("/etc/big", &big), ("/etc/huge", &huge)]);
        let mut f = Facts::default();
        collect(&root, &[file("/etc/big", Parse::Lines), file("/etc/huge", Parse::Lines)], &mut f);
        let driftwatch_schemas::FactValue::List(lines) = &f.0[r#"content["/etc/big"].lines"#] else { panic!() };
        assert_eq!(lines.len(), MAX_LINES);
        assert!(!f.0.contains_key(r#"content["/etc/huge"].lines"#));
        let driftwatch_schemas::FactValue::List(errors) = &f.0["content.errors"] else { panic!() };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[1].contains("more than 262144; not read"), "{errors:?}");
    }
}
