//! A row's canonical JSON: its fields sorted by name, `batch_id` left out
//! (so that a redelivered copy of a row, stored by another batch, has the
//! same digest). Byte for byte what `serde_json::to_value` and then
//! `to_vec` give (serde_json's maps are sorted), without building the
//! intermediate value: this runs once per stored row.
//!
//! A column added to a table after rows were chained ([`ADDED_LATER`]) is
//! left out while it holds its default (`""`, `0`, `[]`): a row stored
//! before the column existed, read back with the default, keeps the
//! digest its link sealed.

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

type Error = serde_json::Error;

/// Columns added after rows of their table were already chained
/// (`0017_confirmations.sql`), left out of the canonical JSON at their
/// default.
pub const ADDED_LATER: [&str; 1] = ["facts_digest"];

/// The canonical JSON of a struct; an error for anything else (rows are
/// structs).
pub fn to_vec<T: Serialize + ?Sized>(row: &T) -> Result<Vec<u8>, Error> {
    row.serialize(Canonical)
}

/// Takes a struct's fields one by one.
struct Canonical;

/// The fields so far: each name and where its JSON lies in `buf`.
struct Fields {
    buf: Vec<u8>,
    spans: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl SerializeStruct for Fields {
    type Ok = Vec<u8>;
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        if key != "batch_id" {
            let start = self.buf.len();
            serde_json::to_writer(&mut self.buf, value)?;
            if ADDED_LATER.contains(&key) && matches!(&self.buf[start..], b"\"\"" | b"0" | b"[]") {
                self.buf.truncate(start);
            } else {
                self.spans.push((key, start..self.buf.len()));
            }
        }
        Ok(())
    }

    fn end(mut self) -> Result<Vec<u8>, Error> {
        self.spans.sort_unstable_by_key(|(k, _)| *k);
        let mut out = Vec::with_capacity(self.buf.len() + self.spans.len() * 24);
        out.push(b'{');
        for (i, (key, span)) in self.spans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key)?;
            out.push(b':');
            out.extend_from_slice(&self.buf[span.clone()]);
        }
        out.push(b'}');
        Ok(out)
    }
}

fn not_a_struct() -> Error {
    ser::Error::custom("a row's canonical JSON is defined for structs only")
}

/// Everything but a struct is refused.
macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Vec<u8>, Error> { Err(not_a_struct()) })*
    };
}

impl Serializer for Canonical {
    type Ok = Vec<u8>;
    type Error = Error;
    type SerializeSeq = Impossible<Vec<u8>, Error>;
    type SerializeTuple = Impossible<Vec<u8>, Error>;
    type SerializeTupleStruct = Impossible<Vec<u8>, Error>;
    type SerializeTupleVariant = Impossible<Vec<u8>, Error>;
    type SerializeMap = Impossible<Vec<u8>, Error>;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Impossible<Vec<u8>, Error>;

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Fields, Error> {
        Ok(Fields { buf: Vec::with_capacity(len * 32), spans: Vec::with_capacity(len) })
    }

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, Error> {
        Err(not_a_struct())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<Vec<u8>, Error> {
        Err(not_a_struct())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<Vec<u8>, Error> {
        Err(not_a_struct())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_struct())
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_struct())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_struct())
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_struct())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::*;

    /// The definition: the row as a JSON value (maps sorted), minus `batch_id`.
    fn reference<T: Serialize>(row: &T) -> Vec<u8> {
        let mut v = serde_json::to_value(row).unwrap();
        v.as_object_mut().unwrap().remove("batch_id");
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn matches_the_json_value_encoding_for_every_kind_of_field() {
        let sla = SlaRow {
            asset_id: "a\"b\\c\u{1}é".into(),
            probe_id: "p".into(),
            target: "t".into(),
            kind: "http".into(),
            timestamp: 7,
            timestamp_ms: 999,
            success: 1,
            latency_us: -3,
            status_code: None,
            error: String::new(),
            cpu_percent: Some(0.1),
            memory_used_bytes: Some(i64::MAX),
            memory_total_bytes: None,
            disk_used_percent: Some(f64::NAN),
            load1: Some(1e300),
            batch_id: "b".into(),
            cert_days_left: Some(-1),
            spool_depth: None,
            spool_bytes: Some(0),
            agent_dropped: None,
            last_sent: Some(u32::MAX),
        };
        assert_eq!(to_vec(&sla).unwrap(), reference(&sla));
        let ev = EvaluationRow {
            asset_id: "a".into(),
            control_id: "c".into(),
            status: "pass".into(),
            severity: "high".into(),
            evaluated_at: 1,
            snapshot_id: "s".into(),
            sequence: 2,
            frameworks: vec!["soc2:CC6.1".into(), "pci-dss:2.2.6".into()],
            evidence: r#"{"x":"y"}"#.into(),
            message: "line\nbreak".into(),
            batch_id: "b".into(),
            evaluated_ms: 5,
        };
        assert_eq!(to_vec(&ev).unwrap(), reference(&ev));
        let mut other = ev.clone();
        other.batch_id = "another batch".into();
        assert_eq!(to_vec(&other).unwrap(), to_vec(&ev).unwrap(), "batch_id is left out");
        let mut snapshot = SnapshotRow {
            asset_id: "a".into(),
            asset_kind: "host".into(),
            hostname: "h".into(),
            label_keys: vec!["env".into()],
            label_values: vec!["prod".into()],
            agent_id: "ag".into(),
            agent_version: "1".into(),
            snapshot_id: "s".into(),
            sequence: 3,
            kind: "full".into(),
            collected_at: 10,
            received_at: 11,
            fact_count: 2,
            removed_paths: vec![],
            batch_id: "b".into(),
            facts_digest: String::new(),
        };
        let mut before = reference(&snapshot);
        let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&before).unwrap();
        for added in ADDED_LATER {
            assert!(fields.remove(added).is_some(), "{added} is a column of snapshots");
        }
        before = serde_json::to_vec(&fields).unwrap();
        assert_eq!(to_vec(&snapshot).unwrap(), before, "a row from before 0017 keeps its digest");
        snapshot.facts_digest = "d".into();
        assert_eq!(to_vec(&snapshot).unwrap(), reference(&snapshot), "set, they are in it");
        assert!(to_vec(&1u32).is_err() && to_vec("text").is_err(), "only structs have a canonical form here");
    }
}
