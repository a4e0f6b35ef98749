//! How both binaries read their configuration: one YAML file, then
//! environment overrides, then typed deserialisation with errors that name
//! the file, line and field.
//!
//! An override is `PREFIX__SECTION__KEY=value` (double underscores between
//! levels, case-insensitive keys); the value is parsed as a YAML scalar, so
//! `DRIFTWATCH_COLLECTOR__BATCH__MAX_ROWS=5000` sets an integer and
//! `DRIFTWATCH_AGENT__KAFKA__BROKERS=host1:9092,host2:9092` a string.
//!
//! A secret may be given as a file reference instead of a value —
//! `password: {file: /run/secrets/clickhouse}` — in the file or in an
//! override: the file's content (without its trailing newline) is the
//! value, so secrets stay out of the configuration and the environment.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// Whether a setting (e.g. a librdkafka property) holds a secret; its
/// value is never shown in logs or debug output.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", ".pem", "oauthbearer.config"].iter().any(|s| k.contains(s))
}

/// Properties with secret values masked, for debug output.
pub fn masked(props: &std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<&str, &str> {
    props.iter().map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() })).collect()
}

/// A Kafka client's extra librdkafka properties (`security.protocol`,
/// `sasl.*`, `ssl.*`), as both binaries' `kafka.properties` hold them:
/// printed with secret values masked.
#[derive(Clone, Default, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct ClientProperties(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        masked(&self.0).fmt(f)
    }
}

impl std::ops::Deref for ClientProperties {
    type Target = std::collections::BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a ClientProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}{location}: {message}")]
    Invalid { path: PathBuf, location: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// Loads `path` (or an empty document when `None`), applies overrides from
/// `env` whose names start with `prefix` + `__`, and deserialises.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, SettingsError> {
    let shown = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<defaults>"));
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| SettingsError::Read { path: p.to_path_buf(), source })?,
        None => String::new(),
    };
    let mut doc: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(&text).map_err(|e| invalid(&shown, &e))?
    };
    if doc.is_null() {
        doc = Value::Mapping(Default::default());
    }
    let marker = format!("{prefix}__");
    let mut overrides: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(&marker)).collect();
    overrides.sort();
    for (var, raw) in &overrides {
        let keys: Vec<String> = var[marker.len()..].split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(SettingsError::Env { var: var.clone(), message: "empty key between '__'".into() });
        }
        let value: Value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        set_path(&mut doc, &keys, value).map_err(|message| SettingsError::Env { var: var.clone(), message })?;
    }
    let references = resolve_files(&mut doc, &mut Vec::new()).map_err(|message| SettingsError::Invalid {
        path: shown.clone(),
        location: String::new(),
        message,
    })?;
    // Without overrides or file references, deserialise the text itself so
    // that errors carry line numbers.
    if overrides.is_empty() && references == 0 {
        serde_yaml::from_str(&text_or_empty(&text)).map_err(|e| invalid(&shown, &e))
    } else {
        let after = |e: serde_yaml::Error| SettingsError::Invalid {
            path: shown.clone(),
            location: " (after environment overrides and file references)".into(),
            // The line numbers would be of the re-written text: left out.
            message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
        };
        // A `Value::Number` or `Value::Bool` does not read as a string
        // where the field is one (`linger.ms: 5` in `kafka.properties`),
        // as the same plain scalar does from text: what the document does
        // not take as it is, it takes through YAML text again.
        serde_yaml::from_value(doc.clone()).or_else(|first| {
            let text = serde_yaml::to_string(&doc).map_err(after)?;
            serde_yaml::from_str(&text).map_err(|_| after(first))
        })
    }
}

/// Replaces every `{file: PATH}` mapping by the content of PATH; returns
/// how many there were.
fn resolve_files(v: &mut Value, at: &mut Vec<String>) -> Result<usize, String> {
    match v {
        Value::Mapping(m) => {
            let file_ref = m.len() == 1 && m.get(Value::String("file".into())).is_some_and(Value::is_string);
            if file_ref {
                let path = m.get(Value::String("file".into())).and_then(Value::as_str).unwrap_or_default().to_string();
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read the secret file {path}: {e}", at.join(".")))?;
                *v = Value::String(text.trim_end_matches(['\n', '\r']).to_string());
                return Ok(1);
            }
            let mut n = 0;
            for (k, child) in m.iter_mut() {
                at.push(k.as_str().unwrap_or("?").to_string());
                n += resolve_files(child, at)?;
                at.pop();
            }
            Ok(n)
        }
        Value::Sequence(items) => {
            let mut n = 0;
            for (i, child) in items.iter_mut().enumerate() {
                at.push(i.to_string());
                n += resolve_files(child, at)?;
                at.pop();
            }
            Ok(n)
        }
        _ => Ok(0),
    }
}

fn text_or_empty(text: &str) -> String {
    if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text.to_string()
    }
}

fn invalid(path: &Path, e: &serde_yaml::Error) -> SettingsError {
    let location = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
    SettingsError::Invalid { path: path.to_path_buf(), location, message: e.to_string() }
}

fn set_path(doc: &mut Value, keys: &[String], value: Value) -> Result<(), String> {
    let mut cur = doc;
    for (i, key) in keys.iter().enumerate() {
        let map = match cur {
            Value::Mapping(m) => m,
            Value::Null => {
                *cur = Value::Mapping(Default::default());
                match cur {
                    Value::Mapping(m) => m,
                    _ => unreachable!("just set to a mapping"),
                }
            }
            _ => return Err(format!("'{}' is not a section", keys[..i].join("."))),
        };
        let k = Value::String(key.clone());
        if i + 1 == keys.len() {
            map.insert(k, value);
            return Ok(());
        }
        cur = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        kafka: Kafka,
        #[serde(default)]
        n: u32,
    }
    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Kafka {
        #[serde(default)]
        brokers: String,
        #[serde(default)]
        properties: std::collections::BTreeMap<String, String>,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn env_overrides_nested_keys() {
        let f = write("kafka:\n  brokers: a:1\nn: 2\n");
        let env = vec![
            ("X__KAFKA__BROKERS".to_string(), "b:2,c:3".to_string()),
            ("X__N".to_string(), "7".to_string()),
            ("OTHER__N".to_string(), "9".to_string()),
        ];
        let c: Cfg = load(Some(f.path()), "X", env).unwrap();
        assert_eq!(c, Cfg { kafka: Kafka { brokers: "b:2,c:3".into(), ..Default::default() }, n: 7 });
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let f = write("kafka:\n  brokers: a:1\n  brokrs: x\n");
        let e = load::<Cfg>(Some(f.path()), "X", vec![]).unwrap_err().to_string();
        assert!(e.contains(&format!("{}:3:", f.path().display())), "{e}");
        assert!(e.contains("brokrs"), "{e}");
    }

    #[test]
    fn missing_file_and_empty_file() {
        let e = load::<Cfg>(Some(Path::new("/nonexistent/x.yaml")), "X", vec![]).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.yaml: cannot read"), "{e}");
        let f = write("");
        assert_eq!(load::<Cfg>(Some(f.path()), "X", vec![]).unwrap().n, 0);
    }

    #[test]
    fn secret_settings_are_masked() {
        let p: std::collections::BTreeMap<String, String> = [("sasl.password", "p"), ("ssl.key.location", "/k"), ("sasl.username", "u")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let m = masked(&p);
        assert_eq!((m["sasl.password"], m["ssl.key.location"], m["sasl.username"]), ("***", "/k", "u"));
    }

    #[test]
    fn secrets_are_read_from_file_references() {
        let secret = write("s3cret\n");
        let f = write(&format!("kafka:\n  brokers: {{file: {}}}\n", secret.path().display()));
        let c: Cfg = load(Some(f.path()), "X", vec![]).unwrap();
        assert_eq!(c.kafka.brokers, "s3cret");
        let env = vec![("X__KAFKA__BROKERS".to_string(), format!("{{file: {}}}", secret.path().display()))];
        let c: Cfg = load(None, "X", env).unwrap();
        assert_eq!(c.kafka.brokers, "s3cret", "in an override too");
        let f = write("kafka:\n  brokers: {file: /nonexistent/secret}\n");
        let e = load::<Cfg>(Some(f.path()), "X", vec![]).unwrap_err().to_string();
        assert!(e.contains("kafka.brokers: cannot read the secret file /nonexistent/secret"), "{e}");
    }

    /// Numbers and booleans in a map of strings (`kafka.properties`) load
    /// whether or not an override or a file reference is present (the
    /// Helm node agent always sets one); so does a number given for a
    /// string setting.
    #[test]
    fn scalars_in_string_maps_load_beside_overrides_and_file_references() {
        let secret = write("pw\n");
        let text = format!(
            "kafka:\n  properties:\n    linger.ms: 5\n    enable.idempotence: true\n    sasl.password: {{file: {}}}\n",
            secret.path().display()
        );
        let f = write(&text);
        let want: std::collections::BTreeMap<String, String> =
            [("linger.ms", "5"), ("enable.idempotence", "true"), ("sasl.password", "pw"), ("batch.size", "1000")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into();
        let env = vec![("X__KAFKA__PROPERTIES__BATCH.SIZE".to_string(), "1000".to_string())];
        let c: Cfg = load(Some(f.path()), "X", env).unwrap();
        assert_eq!(c.kafka.properties, want);
        let c: Cfg = load(None, "X", vec![("X__KAFKA__BROKERS".to_string(), "9092".to_string())]).unwrap();
        assert_eq!(c.kafka.brokers, "9092");
        // An empty section (null) still reads as an empty map beside an
        // override, as the Helm chart's rendered configuration has it.
        let f = write("kafka:\n  properties:\n");
        let c: Cfg = load(Some(f.path()), "X", vec![("X__N".to_string(), "3".to_string())]).unwrap();
        assert!(c.kafka.properties.is_empty() && c.n == 3);
        // A wrong type is still refused, named.
        let e = load::<Cfg>(None, "X", vec![("X__N".to_string(), "many".to_string())]).unwrap_err().to_string();
        assert!(e.contains("after environment overrides") && e.contains("invalid type") && !e.contains(" at line "), "{e}");
    }

    #[test]
    fn override_into_a_scalar_is_an_error() {
        let f = write("n: 2\n");
        let e = load::<Cfg>(Some(f.path()), "X", vec![("X__N__M".into(), "1".into())]).unwrap_err().to_string();
        assert!(e.contains("X__N__M") && e.contains("'n' is not a section"), "{e}");
    }
}
