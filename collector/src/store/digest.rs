//! The digest of a stored row, which the evidence chain links: the first
//! 16 bytes of the SHA-256 of its canonical JSON ([`super::canonical`]),
//! `batch_id` left out so that a redelivered copy of a row matches.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{canonical, Batch};

/// How many tables a batch writes.
pub const TABLE_COUNT: usize = 8;

/// The tables a batch writes, in the order of their codes (1-based).
pub const TABLES: [&str; TABLE_COUNT] =
    ["snapshots", "facts", "audit_events", "sla_measurements", "evaluations", "violations", "drift_events", "confirmations"];

/// A row's digest: the first 16 bytes of the SHA-256 of its canonical JSON.
pub type RowDigest = [u8; 16];

/// The digest of one stored row (`batch_id` left out): the SHA-256 of its
/// canonical JSON, the fields sorted by name (see [`canonical`](super::canonical)).
pub fn row_digest<T: Serialize>(row: &T) -> RowDigest {
    let h = Sha256::digest(canonical::to_vec(row).unwrap_or_default());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

/// (table code, digest) of every row of a batch, sorted.
pub fn batch_digests(b: &Batch) -> Vec<(u8, RowDigest)> {
    let mut out: Vec<(u8, RowDigest)> = Vec::with_capacity(b.rows());
    out.extend(b.snapshots.iter().map(|r| (1, row_digest(r))));
    out.extend(b.facts.iter().map(|r| (2, row_digest(r))));
    out.extend(b.audit.iter().map(|r| (3, row_digest(r))));
    out.extend(b.sla.iter().map(|r| (4, row_digest(r))));
    out.extend(b.evaluations.iter().map(|r| (5, row_digest(r))));
    out.extend(b.violations.iter().map(|r| (6, row_digest(r))));
    out.extend(b.drifts.iter().map(|r| (7, row_digest(r))));
    out.extend(b.confirmations.iter().map(|r| (8, row_digest(r))));
    out.sort_unstable();
    out
}
