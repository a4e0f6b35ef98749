//! Label matchers in Alertmanager's syntax: `name=value`, `name!=value`,
//! `name=~regex`, `name!~regex`; values may be double-quoted. Regexes are
//! anchored (they must match the whole value). A missing label is the empty
//! string, as in Alertmanager.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

/// Labels of an alert.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

/// One matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    op: Op,
    value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Parses `name=value`, `name!=value`, `name=~re` or `name!~re`.
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let pos =
            t.find(['=', '!']).ok_or_else(|| format!("matcher {text:?}: expected name=value, name!=value, name=~regex or name!~regex"))?;
        let name = t[..pos].trim();
        let rest = &t[pos..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(format!("matcher {text:?}: expected =, !=, =~ or !~ after the label name"));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("matcher {text:?}: label name {name:?} must be letters, digits and _"));
        }
        let v = value.trim();
        let value = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => v.to_string(),
        };
        let re = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("matcher {text:?}: {e}"))?),
            _ => None,
        };
        Ok(Matcher { name: name.to_string(), op, value, re })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.re) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(re)) => re.is_match(v),
            (Op::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Whether every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn operators_quotes_and_missing_labels() {
        let l = labels(&[("severity", "critical"), ("asset", "web-1")]);
        assert!(Matcher::parse("severity=critical").unwrap().matches(&l));
        assert!(Matcher::parse(r#"severity="critical""#).unwrap().matches(&l));
        assert!(Matcher::parse("severity=~critical|high").unwrap().matches(&l));
        assert!(!Matcher::parse("severity=~crit").unwrap().matches(&l), "anchored");
        assert!(Matcher::parse("asset!=db-1").unwrap().matches(&l));
        assert!(Matcher::parse("asset!~db-.*").unwrap().matches(&l));
        assert!(Matcher::parse("team=").unwrap().matches(&l), "missing is empty");
        assert!(!Matcher::parse("team!=").unwrap().matches(&l));
        assert_eq!(Matcher::parse(r#"x=~"a|b""#).unwrap().to_string(), r#"x=~"a|b""#);
    }

    #[test]
    fn bad_matchers_say_why() {
        assert!(Matcher::parse("severity").unwrap_err().contains("expected name=value"));
        assert!(Matcher::parse("=x").unwrap_err().contains("label name"));
        assert!(Matcher::parse("a=~(").unwrap_err().contains("a=~("));
    }
}
