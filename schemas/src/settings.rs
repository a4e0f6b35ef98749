//! How both binaries read their configuration: one YAML file, then
//! environment overrides, then typed deserialisation with errors that name
//! the file, line and field.
//!
//! An override is `PREFIX__SECTION__KEY=value` (double underscores between
//! levels, case-insensitive keys); the value is parsed as a YAML scalar, so
//! `DRIFTWATCH_COLLECTOR__BATCH__MAX_ROWS=5000` sets an integer and
//! `DRIFTWATCH_AGENT__KAFKA__BROKERS=host1:9092,host2:9092` a string.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_yaml::Value;

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
    // Re-serialise so that errors after overrides still carry line numbers
    // of the file where possible; overrides only replace scalars.
    if overrides.is_empty() {
        serde_yaml::from_str(&text_or_empty(&text)).map_err(|e| invalid(&shown, &e))
    } else {
        serde_yaml::from_value(doc).map_err(|e| SettingsError::Invalid {
            path: shown,
            location: " (after environment overrides)".into(),
            message: e.to_string(),
        })
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
        assert_eq!(c, Cfg { kafka: Kafka { brokers: "b:2,c:3".into() }, n: 7 });
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
    fn override_into_a_scalar_is_an_error() {
        let f = write("n: 2\n");
        let e = load::<Cfg>(Some(f.path()), "X", vec![("X__N__M".into(), "1".into())]).unwrap_err().to_string();
        assert!(e.contains("X__N__M") && e.contains("'n' is not a section"), "{e}");
    }
}
