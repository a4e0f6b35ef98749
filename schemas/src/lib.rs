//! # driftwatch-schemas
//!
//! The contract between the Driftwatch agent and collector:
//! - [`types`]: Rust types of the three streams (config snapshots, audit
//!   events, SLA measurements), mirroring `schemas/avro/*.avsc`;
//! - [`avro`]: single-object Avro encoding with schema fingerprints, and a
//!   decoder that resolves any known writer schema to the current one;
//! - [`canonical_form`]: the specification's Parsing Canonical Form and
//!   CRC-64-AVRO fingerprints, by which messages name their writer schema;
//! - [`fact_path`]: the names of facts, written as CEL select expressions;
//! - [`identity`]: how agents sign records (Ed25519 over the value, in
//!   two headers) and how keys are named (fingerprints);
//! - [`limits`]: bounds on what one record may hold, and record times
//!   bounded by their receipt;
//! - [`clickhouse`]: numbered DDL migrations for the collector's store.
//!
//! - [`registry`] (feature `registry`): a schema registry client, for
//!   Confluent's wire format.
//!
//! Without the `registry` feature this crate does no I/O and depends on
//! no Kafka and no ClickHouse client.

pub mod avro;
pub mod canonical_form;
pub mod clickhouse;
pub mod fact_path;
pub mod identity;
pub mod limits;
#[cfg(feature = "registry")]
pub mod registry;
pub mod settings;
pub mod types;

pub use avro::{CodecError, Decoder, Encoder};
pub use fact_path::{FactPath, FactPathError};
pub use types::*;
