//! Attestations and their evidence files. An attestation is never
//! changed (a newer one supersedes it); a file is kept once per content,
//! under its SHA-256.

use ::clickhouse::Row;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// What people state about an attested control, with the digests of the
/// files they attached (`file_*`: one entry per file, in order).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AttestationRow {
    pub attestation_id: String,
    pub control_id: String,
    /// `pass` (the control is met) or `fail` (it is not).
    pub status: String,
    pub statement: String,
    pub attested_by: String,
    pub attested_at: u32,
    /// `cli`, or `api:<key name>`.
    pub source: String,
    pub file_names: Vec<String>,
    /// Lowercase hex.
    pub file_sha256: Vec<String>,
    pub file_sizes: Vec<u64>,
    pub file_types: Vec<String>,
}

/// An evidence file's bytes (base64), under their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AttestationFileRow {
    pub sha256: String,
    pub content_type: String,
    pub size: u64,
    /// The bytes, base64 (standard alphabet, padded).
    pub content: String,
    pub stored_at: u32,
}

/// Attestations and their files.
#[async_trait]
pub trait AttestationLog {
    /// Stores the files, then the attestation naming them (an attestation
    /// is never stored before its files).
    async fn put_attestation(&self, attestation: &AttestationRow, files: &[AttestationFileRow]) -> Result<(), StoreError>;

    /// Every attestation, oldest first.
    async fn attestations(&self) -> Result<Vec<AttestationRow>, StoreError>;

    /// The evidence file with this SHA-256, if stored.
    async fn attestation_file(&self, sha256: &str) -> Result<Option<AttestationFileRow>, StoreError>;
}
