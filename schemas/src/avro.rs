//! Avro single-object encoding of the three streams.
//!
//! Every message on the wire is `C3 01`, the 8-byte CRC-64-AVRO (Rabin)
//! fingerprint of the writer schema's Parsing Canonical Form
//! (little-endian), then the Avro datum: the specification's single-object
//! encoding, which any Avro implementation writes and reads
//! ([`crate::canonical_form`]). The [`Decoder`] looks the fingerprint up
//! among the writer schemas it knows and resolves the datum to the current
//! reader schema, so a collector reads data written by older and newer
//! agents alike (fields added with defaults).
//!
//! Compatibility: agents before the specification's fingerprints named
//! their schemas by `apache-avro`'s own canonical form
//! ([`crate::canonical_form::legacy_fingerprint`]). The decoder knows each
//! writer schema by both, so spools and topics in the field still decode;
//! [`Decoder::is_legacy`] tells such records apart, for counting.
//!
//! Confluent's wire format is the other framing, for the Kafka ecosystem
//! (Kafka Connect, ksqlDB, Flink, ClickHouse's `AvroConfluent`): `00`, the
//! writer schema's id in a schema registry (4 bytes, big-endian), then the
//! same datum ([`Encoder::encode_confluent`]). The decoder reads both; an
//! id it has not been given ([`Decoder::add_registry_schema`]) is
//! [`CodecError::UnknownSchemaId`], for the caller to fetch from the
//! registry ([`crate::registry`]).

use std::collections::{BTreeMap, HashMap};

use apache_avro::headers::HeaderBuilder;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::{GenericSingleObjectWriter, Schema};
use chrono::{DateTime, TimeZone, Utc};

use crate::types::*;

/// The current schemas, as shipped in `schemas/avro/`.
pub const CONFIG_SNAPSHOT_AVSC: &str = include_str!("../avro/config_snapshot.avsc");
pub const AUDIT_EVENT_AVSC: &str = include_str!("../avro/audit_event.avsc");
pub const SLA_MEASUREMENT_AVSC: &str = include_str!("../avro/sla_measurement.avsc");

/// Earlier versions of the schemas, still read (an agent may be older than
/// its collector): `schemas/avro/history/<name>.<version>.avsc`.
pub const HISTORY: [(Stream, &str); 1] = [(Stream::Sla, include_str!("../avro/history/sla_measurement.1.avsc"))];

/// The two marker bytes that start every single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;
/// The byte that starts a record in Confluent's wire format.
pub const CONFLUENT_MAGIC: u8 = 0x00;
const CONFLUENT_HEADER_LEN: usize = 5;

/// Why a message could not be encoded or decoded. Decode errors are the
/// reason written to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message is {0} bytes, shorter than its header (10 bytes single-object, 5 in Confluent's wire format)")]
    TooShort(usize),
    #[error("message starts neither with the Avro single-object marker C3 01 nor with Confluent's magic byte 00 (found {0:02X} {1:02X})")]
    BadMarker(u8, u8),
    #[error("unknown writer schema fingerprint {0:016x}")]
    UnknownFingerprint(u64),
    #[error("unknown writer schema id {0} (Confluent wire format)")]
    UnknownSchemaId(u32),
    #[error("schema registry id {id}: {reason}")]
    RegistrySchema { id: u32, reason: String },
    #[error("writer schema {fingerprint:016x} is for {found:?}, but the message arrived on the {expected:?} stream")]
    WrongStream { fingerprint: u64, expected: Stream, found: Stream },
    #[error("Avro datum does not decode: {0}")]
    Datum(String),
    #[error("{0} bytes left over after the datum")]
    TrailingBytes(usize),
    #[error("field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("schema error: {0}")]
    Schema(String),
}

fn field_err(field: &str, reason: impl Into<String>) -> CodecError {
    CodecError::Field { field: field.to_string(), reason: reason.into() }
}

/// Parses one of the current schemas. They are compiled in and tested, so
/// this only fails on a build with a broken `.avsc`.
pub fn current_schema(stream: Stream) -> Result<Schema, CodecError> {
    Schema::parse_str(current_text(stream)).map_err(|e| CodecError::Schema(e.to_string()))
}

pub use crate::canonical_form::fingerprint;

/// The single-object header of a schema: the marker, then its
/// specification fingerprint, little-endian.
struct SpecHeader(u64);

impl HeaderBuilder for SpecHeader {
    fn build_header(&self) -> Vec<u8> {
        let mut h = SINGLE_OBJECT_MARKER.to_vec();
        h.extend_from_slice(&self.0.to_le_bytes());
        h
    }
}

/// Encodes messages with the current schemas. Holds one reusable buffer
/// per stream, so it is `&mut`; give each producing task its own.
pub struct Encoder {
    writers: HashMap<Stream, GenericSingleObjectWriter>,
}

impl Encoder {
    pub fn new() -> Result<Self, CodecError> {
        let mut writers = HashMap::new();
        for stream in Stream::ALL {
            let schema = current_schema(stream)?;
            let header = SpecHeader(fingerprint(&schema));
            let w = GenericSingleObjectWriter::new_with_capacity_and_header_builder(&schema, 1024, &header)
                .map_err(|e| CodecError::Schema(e.to_string()))?;
            writers.insert(stream, w);
        }
        Ok(Encoder { writers })
    }

    /// Encodes one message (single-object encoding).
    pub fn encode(&mut self, message: &Message) -> Result<Vec<u8>, CodecError> {
        let value = match message {
            Message::Snapshot(s) => snapshot_to_value(s),
            Message::Audit(a) => audit_to_value(a),
            Message::Sla(m) => sla_to_value(m),
        };
        let writer = self.writers.get_mut(&message.stream()).ok_or_else(|| CodecError::Schema("no writer for stream".into()))?;
        let mut out = Vec::with_capacity(256);
        writer.write_value_ref(&value, &mut out).map_err(|e| CodecError::Datum(e.to_string()))?;
        Ok(out)
    }

    /// Encodes one message in Confluent's wire format, naming `id`, the
    /// registry's id of the message's current schema
    /// ([`crate::registry`] registers them).
    pub fn encode_confluent(&mut self, message: &Message, id: u32) -> Result<Vec<u8>, CodecError> {
        let single = self.encode(message)?;
        let mut out = Vec::with_capacity(single.len() - HEADER_LEN + CONFLUENT_HEADER_LEN);
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&single[HEADER_LEN..]);
        Ok(out)
    }
}

/// The registry id a record in Confluent's wire format names (`None` for
/// any other framing).
pub fn confluent_schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

struct WriterSchema {
    stream: Stream,
    /// Known by its pre-specification fingerprint (see the module's
    /// documentation).
    legacy: bool,
    /// Reads this writer's data as its stream's reader schema. Built once:
    /// resolving two schemas' names costs as much as decoding a message.
    reader: GenericDatumReader<'static>,
}

/// A parsed schema that lives as long as the process, so that readers
/// built once can borrow it. Interned by its text: only as many are ever
/// kept as distinct schema texts are loaded (the compiled-in ones and the
/// writer schemas an operator or a test adds), however many decoders are
/// built.
fn intern(text: &str) -> Result<&'static Schema, CodecError> {
    static SCHEMAS: std::sync::OnceLock<std::sync::Mutex<HashMap<String, &'static Schema>>> = std::sync::OnceLock::new();
    let mut schemas = SCHEMAS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = schemas.get(text) {
        return Ok(s);
    }
    let schema: &'static Schema = Box::leak(Box::new(Schema::parse_str(text).map_err(|e| CodecError::Schema(e.to_string()))?));
    schemas.insert(text.to_string(), schema);
    Ok(schema)
}

/// The text of a stream's current schema (as `schemas/avro/` ships it).
pub fn current_schema_text(stream: Stream) -> &'static str {
    current_text(stream)
}

fn current_text(stream: Stream) -> &'static str {
    match stream {
        Stream::Snapshots => CONFIG_SNAPSHOT_AVSC,
        Stream::Audit => AUDIT_EVENT_AVSC,
        Stream::Sla => SLA_MEASUREMENT_AVSC,
    }
}

/// Decodes single-object encoded messages written with any known writer
/// schema, resolving them to the current schema of their stream.
pub struct Decoder {
    /// Writer schemas by fingerprint (each under its specification and
    /// its legacy fingerprint), each with its reader.
    writers: HashMap<u64, WriterSchema>,
    /// Every writer schema by its specification fingerprint, with its
    /// stream (its reader is built again when the stream's reader schema
    /// changes).
    schemas: HashMap<u64, (Stream, &'static Schema)>,
    readers: HashMap<Stream, &'static Schema>,
    /// Registry ids (Confluent wire format) and the fingerprint of the
    /// writer schema each names.
    registry_ids: HashMap<u32, u64>,
}

impl Decoder {
    /// A decoder that knows the current schemas (as writer and reader).
    pub fn new() -> Result<Self, CodecError> {
        let mut d = Decoder { writers: HashMap::new(), schemas: HashMap::new(), readers: HashMap::new(), registry_ids: HashMap::new() };
        for stream in Stream::ALL {
            d.readers.insert(stream, intern(current_text(stream))?);
            d.add_writer_schema(stream, current_text(stream))?;
        }
        for (stream, text) in HISTORY {
            d.add_writer_schema(stream, text)?;
        }
        Ok(d)
    }

    /// Also accept data written with `schema_json` (an older or newer
    /// version of `stream`'s schema). Returns its fingerprint.
    pub fn add_writer_schema(&mut self, stream: Stream, schema_json: &str) -> Result<u64, CodecError> {
        let schema = intern(schema_json)?;
        let fp = fingerprint(schema);
        self.schemas.insert(fp, (stream, schema));
        self.build_reader(fp)?;
        Ok(fp)
    }

    /// Accept records in Confluent's wire format naming registry id `id`,
    /// whose schema (as the registry gives it) is `schema_json`. It must be
    /// a version of `stream`'s schema: a record of the same full name that
    /// resolves to the stream's reader schema (fields it lacks have
    /// defaults; a symbol the reader lacks takes the enum's default).
    /// Returns its fingerprint.
    pub fn add_registry_schema(&mut self, id: u32, stream: Stream, schema_json: &str) -> Result<u64, CodecError> {
        let refused = |reason: String| CodecError::RegistrySchema { id, reason };
        let schema = Schema::parse_str(schema_json).map_err(|e| refused(format!("not an Avro schema: {e}")))?;
        let wanted = current_schema(stream)?;
        let name = |s: &Schema| match s {
            Schema::Record(r) => Some(r.name.fullname(None)),
            _ => None,
        };
        if name(&schema) != name(&wanted) {
            return Err(refused(format!(
                "it is {}, not a version of {} (the {stream:?} stream's)",
                name(&schema).unwrap_or_else(|| "not a record".into()),
                name(&wanted).unwrap_or_default()
            )));
        }
        let fp = self
            .add_writer_schema(stream, schema_json)
            .map_err(|e| refused(format!("it does not resolve to this collector's schema: {e}")))?;
        self.registry_ids.insert(id, fp);
        Ok(fp)
    }

    /// How many registry ids the decoder was given.
    pub fn registry_ids(&self) -> usize {
        self.registry_ids.len()
    }

    /// Whether records naming registry id `id` decode.
    pub fn knows_registry_id(&self, id: u32) -> bool {
        self.registry_ids.contains_key(&id)
    }

    /// Whether `bytes` name their writer schema by its pre-specification
    /// fingerprint (a record of an agent from before; still decoded).
    pub fn is_legacy(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(&SINGLE_OBJECT_MARKER) && header_fingerprint(bytes).and_then(|fp| self.writers.get(&fp)).is_some_and(|w| w.legacy)
    }

    /// Read with `schema_json` as `stream`'s reader schema instead of the
    /// compiled-in one (used to show a newer reader reads older data).
    pub fn set_reader_schema(&mut self, stream: Stream, schema_json: &str) -> Result<(), CodecError> {
        self.readers.insert(stream, intern(schema_json)?);
        let of_stream: Vec<u64> = self.schemas.iter().filter(|(_, (s, _))| *s == stream).map(|(fp, _)| *fp).collect();
        for fp in of_stream {
            self.build_reader(fp)?;
        }
        Ok(())
    }

    /// Builds the reader of writer schema `fp` to its stream's reader
    /// schema; data written with the reader schema itself is read as is
    /// (resolving a value to its own schema changes nothing).
    fn build_reader(&mut self, fp: u64) -> Result<(), CodecError> {
        let Some(&(stream, writer)) = self.schemas.get(&fp) else { return Ok(()) };
        let reader_schema = *self.readers.get(&stream).ok_or_else(|| CodecError::Schema(format!("no reader schema for {stream:?}")))?;
        let reader = |legacy| {
            let builder = GenericDatumReader::builder(writer);
            let reader = if std::ptr::eq(writer, reader_schema) { builder.build() } else { builder.reader_schema(reader_schema).build() }
                .map_err(|e| CodecError::Schema(e.to_string()))?;
            Ok::<_, CodecError>(WriterSchema { stream, legacy, reader })
        };
        let legacy = crate::canonical_form::legacy_fingerprint(writer);
        if legacy != fp {
            self.writers.insert(legacy, reader(true)?);
        }
        self.writers.insert(fp, reader(false)?);
        Ok(())
    }

    /// Decodes a message that arrived on `expected`'s topic.
    pub fn decode(&self, expected: Stream, bytes: &[u8]) -> Result<Message, CodecError> {
        let value = self.decode_value(expected, bytes)?;
        match expected {
            Stream::Snapshots => snapshot_from_value(&value).map(Message::Snapshot),
            Stream::Audit => audit_from_value(&value).map(Message::Audit),
            Stream::Sla => sla_from_value(&value).map(Message::Sla),
        }
    }

    /// Decodes to a generic Avro value resolved to the reader schema.
    pub fn decode_value(&self, expected: Stream, bytes: &[u8]) -> Result<Value, CodecError> {
        let (fp, header) = if bytes.first() == Some(&CONFLUENT_MAGIC) {
            let id = confluent_schema_id(bytes).ok_or(CodecError::TooShort(bytes.len()))?;
            (*self.registry_ids.get(&id).ok_or(CodecError::UnknownSchemaId(id))?, CONFLUENT_HEADER_LEN)
        } else {
            if bytes.len() < HEADER_LEN {
                return Err(CodecError::TooShort(bytes.len()));
            }
            if bytes[..2] != SINGLE_OBJECT_MARKER {
                return Err(CodecError::BadMarker(bytes[0], bytes[1]));
            }
            (header_fingerprint(bytes).ok_or(CodecError::TooShort(bytes.len()))?, HEADER_LEN)
        };
        let writer = self.writers.get(&fp).ok_or(CodecError::UnknownFingerprint(fp))?;
        if writer.stream != expected {
            return Err(CodecError::WrongStream { fingerprint: fp, expected, found: writer.stream });
        }
        let mut body = &bytes[header..];
        let value = writer.reader.read_value(&mut body).map_err(|e| CodecError::Datum(e.to_string()))?;
        if !body.is_empty() {
            return Err(CodecError::TrailingBytes(body.len()));
        }
        Ok(value)
    }
}

/// The fingerprint a single-object header names (`None` when `bytes` are
/// shorter than a header).
fn header_fingerprint(bytes: &[u8]) -> Option<u64> {
    let fp: [u8; 8] = bytes.get(2..HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(fp))
}

// ---- Rust types -> Avro values -------------------------------------------

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn ts(t: &DateTime<Utc>) -> Value {
    Value::TimestampMillis(t.timestamp_millis())
}

fn opt_str(v: &Option<String>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(x) => Value::Union(1, Box::new(s(x))),
    }
}

fn str_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

fn str_array(v: &[String]) -> Value {
    Value::Array(v.iter().map(|x| s(x)).collect())
}

fn enum_value(symbols: &[&str], symbol: &str) -> Value {
    let idx = symbols.iter().position(|x| *x == symbol).unwrap_or(0);
    Value::Enum(idx as u32, symbols[idx].to_string())
}

fn asset_kind_symbol(k: AssetKind) -> &'static str {
    AssetKind::SYMBOLS[k as usize]
}

fn fact_value(v: &FactValue) -> Value {
    let (idx, inner) = match v {
        FactValue::Null => (0, Value::Null),
        FactValue::Bool(b) => (1, Value::Boolean(*b)),
        FactValue::Int(i) => (2, Value::Long(*i)),
        FactValue::Float(f) => (3, Value::Double(*f)),
        FactValue::Str(x) => (4, s(x)),
        FactValue::List(l) => (5, str_array(l)),
    };
    Value::Union(idx, Box::new(inner))
}

fn snapshot_to_value(x: &ConfigSnapshot) -> Value {
    let asset = rec(vec![
        ("id", s(&x.asset.id)),
        ("kind", enum_value(&AssetKind::SYMBOLS, asset_kind_symbol(x.asset.kind))),
        ("hostname", s(&x.asset.hostname)),
        ("labels", str_map(&x.asset.labels)),
    ]);
    let facts = x.facts.iter().map(|f| rec(vec![("path", s(&f.path)), ("value", fact_value(&f.value))])).collect();
    rec(vec![
        ("asset", asset),
        ("agent_id", s(&x.agent_id)),
        ("agent_version", s(&x.agent_version)),
        ("snapshot_id", s(&x.snapshot_id)),
        ("sequence", Value::Long(x.sequence)),
        ("collected_at", ts(&x.collected_at)),
        ("kind", enum_value(&["full", "delta"], if x.kind == SnapshotKind::Full { "full" } else { "delta" })),
        ("facts", Value::Array(facts)),
        ("removed_paths", str_array(&x.removed_paths)),
    ])
}

fn audit_to_value(x: &AuditEvent) -> Value {
    let actor = rec(vec![
        ("user", opt_str(&x.actor.user)),
        (
            "uid",
            match x.actor.uid {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(u) => Value::Union(1, Box::new(Value::Long(u))),
            },
        ),
        ("auid", opt_str(&x.actor.auid)),
        ("groups", str_array(&x.actor.groups)),
    ]);
    rec(vec![
        ("event_id", s(&x.event_id)),
        ("asset_id", s(&x.asset_id)),
        ("hostname", s(&x.hostname)),
        ("source", enum_value(&AuditSource::SYMBOLS, AuditSource::SYMBOLS[x.source as usize])),
        ("timestamp", ts(&x.timestamp)),
        ("actor", actor),
        ("action", s(&x.action)),
        ("object", opt_str(&x.object)),
        ("outcome", enum_value(&Outcome::SYMBOLS, x.outcome.as_str())),
        ("source_address", opt_str(&x.source_address)),
        ("raw", s(&x.raw)),
        ("extra", str_map(&x.extra)),
    ])
}

fn sla_to_value(x: &SlaMeasurement) -> Value {
    let metrics = match &x.host_metrics {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(m) => Value::Union(
            1,
            Box::new(rec(vec![
                ("cpu_percent", Value::Double(m.cpu_percent)),
                ("memory_used_bytes", Value::Long(m.memory_used_bytes)),
                ("memory_total_bytes", Value::Long(m.memory_total_bytes)),
                ("disk_used_percent", Value::Double(m.disk_used_percent)),
                ("load1", Value::Double(m.load1)),
            ])),
        ),
    };
    let health = match &x.agent_health {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(h) => Value::Union(
            1,
            Box::new(rec(vec![
                ("spool_depth", Value::Long(h.spool_depth)),
                ("spool_bytes", Value::Long(h.spool_bytes)),
                ("dropped", Value::Long(h.dropped)),
                (
                    "last_sent",
                    match &h.last_sent {
                        None => Value::Union(0, Box::new(Value::Null)),
                        Some(t) => Value::Union(1, Box::new(ts(t))),
                    },
                ),
            ])),
        ),
    };
    rec(vec![
        ("asset_id", s(&x.asset_id)),
        ("probe_id", s(&x.probe_id)),
        ("target", s(&x.target)),
        ("kind", enum_value(&ProbeKind::SYMBOLS, x.kind.as_str())),
        ("timestamp", ts(&x.timestamp)),
        ("success", Value::Boolean(x.success)),
        ("latency_us", Value::Long(x.latency_us)),
        (
            "status_code",
            match x.status_code {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(c) => Value::Union(1, Box::new(Value::Int(c))),
            },
        ),
        ("error", opt_str(&x.error)),
        ("host_metrics", metrics),
        (
            "cert_days_left",
            match x.cert_days_left {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(d) => Value::Union(1, Box::new(Value::Int(d))),
            },
        ),
        ("agent_health", health),
    ])
}

// ---- Avro values -> Rust types -------------------------------------------

/// Field access on a decoded record, with errors that name the field.
struct Fields<'a> {
    path: String,
    fields: &'a [(String, Value)],
}

impl<'a> Fields<'a> {
    fn of(path: &str, v: &'a Value) -> Result<Self, CodecError> {
        match v {
            Value::Record(fields) => Ok(Fields { path: path.to_string(), fields }),
            other => Err(field_err(path, format!("expected a record, found {other:?}"))),
        }
    }

    fn name(&self, f: &str) -> String {
        if self.path.is_empty() {
            f.to_string()
        } else {
            format!("{}.{f}", self.path)
        }
    }

    fn get(&self, f: &str) -> Result<&'a Value, CodecError> {
        let v = self.fields.iter().find(|(k, _)| k == f).map(|(_, v)| v).ok_or_else(|| field_err(&self.name(f), "missing"))?;
        // Unions resolve to their branch; nulls stay Null.
        Ok(match v {
            Value::Union(_, inner) => inner,
            v => v,
        })
    }

    fn string(&self, f: &str) -> Result<String, CodecError> {
        match self.get(f)? {
            Value::String(x) => Ok(x.clone()),
            other => Err(field_err(&self.name(f), format!("expected a string, found {other:?}"))),
        }
    }

    fn opt_string(&self, f: &str) -> Result<Option<String>, CodecError> {
        match self.get(f)? {
            Value::Null => Ok(None),
            Value::String(x) => Ok(Some(x.clone())),
            other => Err(field_err(&self.name(f), format!("expected a string or null, found {other:?}"))),
        }
    }

    fn long(&self, f: &str) -> Result<i64, CodecError> {
        match self.get(f)? {
            Value::Long(x) => Ok(*x),
            Value::Int(x) => Ok((*x).into()),
            other => Err(field_err(&self.name(f), format!("expected a long, found {other:?}"))),
        }
    }

    fn double(&self, f: &str) -> Result<f64, CodecError> {
        match self.get(f)? {
            Value::Double(x) => Ok(*x),
            Value::Float(x) => Ok((*x).into()),
            Value::Long(x) => Ok(*x as f64),
            Value::Int(x) => Ok((*x).into()),
            other => Err(field_err(&self.name(f), format!("expected a double, found {other:?}"))),
        }
    }

    fn boolean(&self, f: &str) -> Result<bool, CodecError> {
        match self.get(f)? {
            Value::Boolean(x) => Ok(*x),
            other => Err(field_err(&self.name(f), format!("expected a boolean, found {other:?}"))),
        }
    }

    fn timestamp(&self, f: &str) -> Result<DateTime<Utc>, CodecError> {
        let ms = match self.get(f)? {
            Value::TimestampMillis(x) | Value::Long(x) => *x,
            other => return Err(field_err(&self.name(f), format!("expected timestamp-millis, found {other:?}"))),
        };
        Utc.timestamp_millis_opt(ms).single().ok_or_else(|| field_err(&self.name(f), format!("timestamp {ms} out of range")))
    }

    fn opt_timestamp(&self, f: &str) -> Result<Option<DateTime<Utc>>, CodecError> {
        match self.get(f)? {
            Value::Null => Ok(None),
            _ => self.timestamp(f).map(Some),
        }
    }

    fn symbol(&self, f: &str) -> Result<String, CodecError> {
        match self.get(f)? {
            Value::Enum(_, sym) => Ok(sym.clone()),
            Value::String(x) => Ok(x.clone()),
            other => Err(field_err(&self.name(f), format!("expected an enum symbol, found {other:?}"))),
        }
    }

    fn str_map(&self, f: &str) -> Result<BTreeMap<String, String>, CodecError> {
        match self.get(f)? {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(x) => Ok((k.clone(), x.clone())),
                    other => Err(field_err(&format!("{}[{k}]", self.name(f)), format!("expected a string, found {other:?}"))),
                })
                .collect(),
            other => Err(field_err(&self.name(f), format!("expected a map, found {other:?}"))),
        }
    }

    fn str_array(&self, f: &str) -> Result<Vec<String>, CodecError> {
        match self.get(f)? {
            Value::Array(items) => items.iter().map(|v| string_item(&self.name(f), v)).collect(),
            other => Err(field_err(&self.name(f), format!("expected an array, found {other:?}"))),
        }
    }
}

fn string_item(field: &str, v: &Value) -> Result<String, CodecError> {
    match v {
        Value::String(x) => Ok(x.clone()),
        other => Err(field_err(field, format!("expected string items, found {other:?}"))),
    }
}

fn parse_symbol<T: Copy>(field: &str, sym: &str, symbols: &[&str], values: &[T]) -> Result<T, CodecError> {
    symbols.iter().position(|x| *x == sym).map(|i| values[i]).ok_or_else(|| field_err(field, format!("unknown symbol {sym:?}")))
}

fn fact_value_from(field: &str, v: &Value) -> Result<FactValue, CodecError> {
    let v = match v {
        Value::Union(_, inner) => inner.as_ref(),
        v => v,
    };
    Ok(match v {
        Value::Null => FactValue::Null,
        Value::Boolean(b) => FactValue::Bool(*b),
        Value::Long(i) => FactValue::Int(*i),
        Value::Int(i) => FactValue::Int((*i).into()),
        Value::Double(f) => FactValue::Float(*f),
        Value::String(x) => FactValue::Str(x.clone()),
        Value::Array(items) => FactValue::List(items.iter().map(|i| string_item(field, i)).collect::<Result<_, _>>()?),
        other => return Err(field_err(field, format!("unsupported fact value {other:?}"))),
    })
}

fn snapshot_from_value(v: &Value) -> Result<ConfigSnapshot, CodecError> {
    let r = Fields::of("", v)?;
    let a = Fields::of("asset", r.get("asset")?)?;
    let asset = Asset {
        id: a.string("id")?,
        kind: parse_symbol(
            "asset.kind",
            &a.symbol("kind")?,
            &AssetKind::SYMBOLS,
            &[AssetKind::Host, AssetKind::K8sNode, AssetKind::K8sCluster],
        )?,
        hostname: a.string("hostname")?,
        labels: a.str_map("labels")?,
    };
    let facts = match r.get("facts")? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = format!("facts[{i}]");
                let f = Fields::of(&name, item)?;
                Ok(Fact { path: canonical_path(f.string("path")?), value: fact_value_from(&format!("{name}.value"), f.get("value")?)? })
            })
            .collect::<Result<Vec<_>, CodecError>>()?,
        other => return Err(field_err("facts", format!("expected an array, found {other:?}"))),
    };
    Ok(ConfigSnapshot {
        asset,
        agent_id: r.string("agent_id")?,
        agent_version: r.string("agent_version")?,
        snapshot_id: r.string("snapshot_id")?,
        sequence: r.long("sequence")?,
        collected_at: r.timestamp("collected_at")?,
        kind: parse_symbol("kind", &r.symbol("kind")?, &["full", "delta"], &[SnapshotKind::Full, SnapshotKind::Delta])?,
        facts,
        removed_paths: r.str_array("removed_paths")?.into_iter().map(canonical_path).collect(),
    })
}

/// A fact path as the collector keys it from here on: written the one way
/// [`crate::FactPath`] writes it (`a["b"]` is `a.b`), so a fact is found
/// however an agent wrote it; the same string when it is written so
/// already, or when it does not parse (no check can read it; it is kept
/// as sent).
fn canonical_path(path: String) -> String {
    match crate::FactPath::canonical(&path) {
        Ok(std::borrow::Cow::Owned(canonical)) => canonical,
        Ok(std::borrow::Cow::Borrowed(_)) | Err(_) => path,
    }
}

fn audit_from_value(v: &Value) -> Result<AuditEvent, CodecError> {
    let r = Fields::of("", v)?;
    let a = Fields::of("actor", r.get("actor")?)?;
    let uid = match a.get("uid")? {
        Value::Null => None,
        Value::Long(x) => Some(*x),
        Value::Int(x) => Some((*x).into()),
        other => return Err(field_err("actor.uid", format!("expected a long or null, found {other:?}"))),
    };
    Ok(AuditEvent {
        event_id: r.string("event_id")?,
        asset_id: r.string("asset_id")?,
        hostname: r.string("hostname")?,
        source: parse_symbol(
            "source",
            &r.symbol("source")?,
            &AuditSource::SYMBOLS,
            &[AuditSource::Auditd, AuditSource::Authlog, AuditSource::Journald, AuditSource::K8sAudit],
        )?,
        timestamp: r.timestamp("timestamp")?,
        actor: Actor { user: a.opt_string("user")?, uid, auid: a.opt_string("auid")?, groups: a.str_array("groups")? },
        action: r.string("action")?,
        object: r.opt_string("object")?,
        outcome: parse_symbol(
            "outcome",
            &r.symbol("outcome")?,
            &Outcome::SYMBOLS,
            &[Outcome::Success, Outcome::Failure, Outcome::Unknown],
        )?,
        source_address: r.opt_string("source_address")?,
        raw: r.string("raw")?,
        extra: r.str_map("extra")?,
    })
}

fn sla_from_value(v: &Value) -> Result<SlaMeasurement, CodecError> {
    let r = Fields::of("", v)?;
    let status_code = match r.get("status_code")? {
        Value::Null => None,
        Value::Int(x) => Some(*x),
        other => return Err(field_err("status_code", format!("expected an int or null, found {other:?}"))),
    };
    let host_metrics = match r.get("host_metrics")? {
        Value::Null => None,
        m => {
            let m = Fields::of("host_metrics", m)?;
            Some(HostMetrics {
                cpu_percent: m.double("cpu_percent")?,
                memory_used_bytes: m.long("memory_used_bytes")?,
                memory_total_bytes: m.long("memory_total_bytes")?,
                disk_used_percent: m.double("disk_used_percent")?,
                load1: m.double("load1")?,
            })
        }
    };
    let cert_days_left = match r.get("cert_days_left")? {
        Value::Null => None,
        Value::Int(x) => Some(*x),
        other => return Err(field_err("cert_days_left", format!("expected an int or null, found {other:?}"))),
    };
    let agent_health = match r.get("agent_health")? {
        Value::Null => None,
        h => {
            let h = Fields::of("agent_health", h)?;
            Some(AgentHealth {
                spool_depth: h.long("spool_depth")?,
                spool_bytes: h.long("spool_bytes")?,
                dropped: h.long("dropped")?,
                last_sent: h.opt_timestamp("last_sent")?,
            })
        }
    };
    Ok(SlaMeasurement {
        asset_id: r.string("asset_id")?,
        probe_id: r.string("probe_id")?,
        target: r.string("target")?,
        kind: parse_symbol(
            "kind",
            &r.symbol("kind")?,
            &ProbeKind::SYMBOLS,
            &[ProbeKind::Http, ProbeKind::Tcp, ProbeKind::Tls, ProbeKind::Dns, ProbeKind::Host],
        )?,
        timestamp: r.timestamp("timestamp")?,
        success: r.boolean("success")?,
        latency_us: r.long("latency_us")?,
        status_code,
        error: r.opt_string("error")?,
        host_metrics,
        cert_days_left,
        agent_health,
    })
}
