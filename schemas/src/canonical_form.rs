//! The Avro specification's Parsing Canonical Form of a schema, and the
//! CRC-64-AVRO fingerprint over it: what a single-object encoded message
//! names its writer schema by, so that any Avro implementation can route
//! and read Driftwatch's topics, and write to them.
//!
//! Written here rather than taken from `apache-avro` because its
//! `Schema::canonical_form` (0.22) is not the specification's: a logical
//! type over a primitive (`{"type": "long", "logicalType":
//! "timestamp-millis"}`) stays an object (`{"type":"long"}`) instead of
//! becoming `"long"`, and `precision`/`scale` are kept. Every fingerprint
//! it gives for a schema with a logical type differs from Java's, Python's
//! (fastavro) and the specification's. That form is kept as
//! [`legacy_fingerprint`] only to read what earlier agents wrote.
//!
//! The transformation, rule by rule (specification, "Transforming into
//! Parsing Canonical Form"):
//! - PRIMITIVES: `{"type": "int"}` (with any attributes that get stripped)
//!   is written `"int"`;
//! - FULLNAMES: names of records, enums and fixed, and references to
//!   them, are written with their namespace; `namespace` is dropped;
//! - STRIP: only `name`, `type`, `fields`, `symbols`, `items`, `values`
//!   and `size` are kept;
//! - ORDER: in that order;
//! - STRINGS, INTEGERS, WHITESPACE: strings unescaped to UTF-8, integers
//!   without quotes or leading zeros, no whitespace.

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use digest::Digest;
use serde_json::Value;

/// Why a schema has no canonical form (it is not a valid Avro schema).
#[derive(Debug, thiserror::Error)]
#[error("schema is not valid Avro for the canonical form: {0}")]
pub struct CanonicalFormError(String);

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The attributes kept, in the order they are written (ORDER rule).
const KEPT: [&str; 7] = ["name", "type", "fields", "symbols", "items", "values", "size"];

/// The Parsing Canonical Form of a schema given as JSON text.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, CanonicalFormError> {
    let json: Value = serde_json::from_str(schema_json).map_err(|e| CanonicalFormError(e.to_string()))?;
    canonical_form_of(&json)
}

/// The Parsing Canonical Form of a schema already parsed as JSON.
pub fn canonical_form_of(schema: &Value) -> Result<String, CanonicalFormError> {
    let mut out = String::with_capacity(256);
    write_schema(schema, "", &mut out)?;
    Ok(out)
}

/// The specification's 64-bit CRC-64-AVRO (Rabin) fingerprint of a
/// schema's Parsing Canonical Form, as the number whose little-endian
/// bytes follow `C3 01` in a single-object encoded message.
pub fn fingerprint_of_text(schema_json: &str) -> Result<u64, CanonicalFormError> {
    Ok(rabin(&parsing_canonical_form(schema_json)?))
}

/// The same, for a parsed schema.
pub fn fingerprint(schema: &Schema) -> u64 {
    // A parsed schema always serializes to valid schema JSON, whose
    // canonical form exists; the fallback is never taken.
    let form = serde_json::to_value(schema)
        .map_err(|e| CanonicalFormError(e.to_string()))
        .and_then(|json| canonical_form_of(&json))
        .unwrap_or_else(|_| schema.canonical_form());
    rabin(&form)
}

/// The fingerprint Driftwatch wrote before it followed the specification
/// (`apache-avro`'s own canonical form; see the module's documentation).
/// Records written with it are still read, and counted.
pub fn legacy_fingerprint(schema: &Schema) -> u64 {
    rabin(&schema.canonical_form())
}

/// CRC-64-AVRO of a canonical form (the Rabin digest's bytes are its
/// little-endian encoding).
fn rabin(canonical_form: &str) -> u64 {
    let bytes = Rabin::digest(canonical_form.as_bytes());
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(le)
}

fn err(what: impl Into<String>) -> CanonicalFormError {
    CanonicalFormError(what.into())
}

/// The full name of a named type declared as `name` inside `namespace`
/// (a name with a dot is already full; an explicit `namespace`
/// attribute, even empty, replaces the enclosing one).
fn full_name(name: &str, own_namespace: Option<&str>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    let ns = own_namespace.unwrap_or(enclosing);
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}.{name}")
    }
}

/// The namespace a full name gives to the types declared inside it.
fn namespace_of(full: &str) -> &str {
    full.rsplit_once('.').map_or("", |(ns, _)| ns)
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes only what JSON requires (quotes, backslashes,
    // control characters) and writes everything else as UTF-8: the
    // STRINGS rule.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\"")));
}

fn write_schema(schema: &Value, namespace: &str, out: &mut String) -> Result<(), CanonicalFormError> {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => write_string(name, out),
        // A reference to a named type (FULLNAMES).
        Value::String(name) => write_string(&full_name(name, None, namespace), out),
        Value::Array(branches) => write_list(branches, out, |b, out| write_schema(b, namespace, out))?,
        Value::Object(map) => {
            let ty = match map.get("type") {
                Some(Value::String(t)) => t.as_str(),
                // `{"type": {"type": "int"}}` or `{"type": [..]}`: the
                // inner schema is the schema.
                Some(nested) => return write_schema(nested, namespace, out),
                None => return Err(err("an object schema without \"type\"")),
            };
            if PRIMITIVES.contains(&ty) {
                // PRIMITIVES, after STRIP: a primitive with a logical type
                // (or any other attribute) is that primitive.
                write_string(ty, out);
                return Ok(());
            }
            write_complex(map, ty, namespace, out)?;
        }
        other => return Err(err(format!("{other} is not a schema"))),
    }
    Ok(())
}

/// A record, enum, fixed, array or map: its kept attributes, in order.
fn write_complex(map: &serde_json::Map<String, Value>, ty: &str, namespace: &str, out: &mut String) -> Result<(), CanonicalFormError> {
    let named = matches!(ty, "record" | "error" | "enum" | "fixed");
    // The namespace of the types declared (or referenced) inside: this
    // type's own, when it is named.
    let mut inner_ns = namespace.to_string();
    out.push('{');
    for key in KEPT {
        let Some(v) = map.get(key) else { continue };
        if key == "name" && !named {
            continue; // not an attribute of an array or a map
        }
        if !out.ends_with('{') {
            out.push(',');
        }
        write_string(key, out);
        out.push(':');
        match key {
            "name" => {
                let name = v.as_str().ok_or_else(|| err(format!("the name of a {ty} is not a string")))?;
                let full = full_name(name, map.get("namespace").and_then(Value::as_str), namespace);
                inner_ns = namespace_of(&full).to_string();
                write_string(&full, out);
            }
            "type" => write_string(ty, out),
            "fields" => {
                let fields = v.as_array().ok_or_else(|| err("\"fields\" is not an array"))?;
                write_list(fields, out, |f, out| {
                    // A field keeps its (unqualified) name and its type.
                    let name = f.get("name").and_then(Value::as_str).ok_or_else(|| err("a field without a name"))?;
                    let fty = f.get("type").ok_or_else(|| err(format!("field {name:?} has no type")))?;
                    out.push_str("{\"name\":");
                    write_string(name, out);
                    out.push_str(",\"type\":");
                    write_schema(fty, &inner_ns, out)?;
                    out.push('}');
                    Ok(())
                })?;
            }
            "symbols" => {
                let symbols = v.as_array().ok_or_else(|| err("\"symbols\" is not an array"))?;
                write_list(symbols, out, |s, out| {
                    write_string(s.as_str().ok_or_else(|| err("an enum symbol is not a string"))?, out);
                    Ok(())
                })?;
            }
            "items" | "values" => write_schema(v, &inner_ns, out)?,
            _ => {
                // "size", under INTEGERS: no quotes, no leading zeros.
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| err("\"size\" is not a non-negative integer"))?;
                out.push_str(&n.to_string());
            }
        }
    }
    out.push('}');
    Ok(())
}

/// `[a,b,...]`, each item written by `item`.
fn write_list(
    items: &[Value],
    out: &mut String,
    mut item: impl FnMut(&Value, &mut String) -> Result<(), CanonicalFormError>,
) -> Result<(), CanonicalFormError> {
    out.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(v, out)?;
    }
    out.push(']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints as the wire bytes after `C3 01`, in hex: the form
    /// fastavro's `fingerprint(..., "CRC-64-AVRO")` and Java's
    /// `SchemaNormalization` print them. Taken from fastavro 1.13.
    fn wire_hex(fp: u64) -> String {
        fp.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn primitives_and_logical_types_reduce_to_the_primitive() {
        assert_eq!(parsing_canonical_form(r#""null""#).unwrap(), r#""null""#);
        assert_eq!(parsing_canonical_form(r#"{"type": "int", "logicalType": "date"}"#).unwrap(), r#""int""#);
        assert_eq!(parsing_canonical_form(r#"{"type": {"type": "string"}}"#).unwrap(), r#""string""#);
        assert_eq!(wire_hex(fingerprint_of_text(r#""null""#).unwrap()), "8a8f25cce724dd63");
        assert_eq!(wire_hex(fingerprint_of_text(r#"{"type":"int","logicalType":"date"}"#).unwrap()), "8f5c393f1ad57572");
    }

    #[test]
    fn fixed_keeps_only_name_type_and_size() {
        let s = r#"{"type":"fixed","name":"f","namespace":"a.b","size":"016","logicalType":"decimal","precision":4,"scale":2}"#;
        assert_eq!(parsing_canonical_form(s).unwrap(), r#"{"name":"a.b.f","type":"fixed","size":16}"#);
        assert_eq!(wire_hex(fingerprint_of_text(s).unwrap()), "e03c310aefceeb7f");
    }

    #[test]
    fn names_are_full_attributes_stripped_and_ordered() {
        let s = r#"{"fields":[
            {"name":"a","doc":"x","type":{"symbols":["A"],"type":"enum","name":"E","namespace":"z"}},
            {"name":"b","type":"z.E"},
            {"name":"c","type":{"type":"record","name":"q.S","fields":[
                {"name":"d","type":{"type":"map","values":{"type":"long","logicalType":"timestamp-millis"}}},
                {"name":"t","type":{"type":"fixed","name":"T","size":4}}]}},
            {"name":"e","type":["null","q.S","q.T","R"],"default":null}],
          "type":"record","name":"R","namespace":"x.y","doc":"d","aliases":["old"]}"#;
        let expected = concat!(
            r#"{"name":"x.y.R","type":"record","fields":[{"name":"a","type":{"name":"z.E","type":"enum","symbols":["A"]}},"#,
            r#"{"name":"b","type":"z.E"},{"name":"c","type":{"name":"q.S","type":"record","fields":[{"name":"d","type":"#,
            r#"{"type":"map","values":"long"}},{"name":"t","type":{"name":"q.T","type":"fixed","size":4}}]}},"#,
            r#"{"name":"e","type":["null","q.S","q.T","x.y.R"]}]}"#
        );
        assert_eq!(parsing_canonical_form(s).unwrap(), expected);
        assert_eq!(wire_hex(fingerprint_of_text(s).unwrap()), "3e44cb491a263709");
    }

    #[test]
    fn escaped_strings_are_written_in_utf8() {
        let s = r#"{"type":"enum","name":"E","symbols":["\u0041"]}"#;
        assert_eq!(parsing_canonical_form(s).unwrap(), r#"{"name":"E","type":"enum","symbols":["A"]}"#);
    }

    #[test]
    fn driftwatch_schemas_have_the_fingerprints_other_implementations_compute() {
        // fastavro 1.13 on the shipped files; published in schemas/README.md.
        let cases = [
            (crate::avro::CONFIG_SNAPSHOT_AVSC, "cccfc65f12f3e645"),
            (crate::avro::AUDIT_EVENT_AVSC, "7d8a7c2e7d5f580d"),
            (crate::avro::SLA_MEASUREMENT_AVSC, "88082ab9723bc2ae"),
            (crate::avro::HISTORY[0].1, "a0f5900f92ef03bb"),
        ];
        for (text, hex) in cases {
            assert_eq!(wire_hex(fingerprint_of_text(text).unwrap()), hex);
            // The parsed schema gives the same (what the codec uses).
            let parsed = Schema::parse_str(text).unwrap();
            assert_eq!(wire_hex(fingerprint(&parsed)), hex);
            // And the legacy one differs (every stream has a timestamp).
            assert_ne!(legacy_fingerprint(&parsed), fingerprint(&parsed));
        }
        assert_eq!(fingerprint_of_text(crate::avro::CONFIG_SNAPSHOT_AVSC).unwrap(), 0x45e6_f312_5fc6_cfcc);
    }

    #[test]
    fn invalid_schemas_are_errors_not_panics() {
        for bad in [
            "",
            "1",
            "{}",
            r#"{"type":"fixed","name":"f","size":-1}"#,
            r#"{"type":"record","name":1}"#,
            r#"{"type":"record","name":"r","fields":[{"type":"int"}]}"#,
        ] {
            assert!(parsing_canonical_form(bad).is_err(), "{bad}");
        }
    }
}
