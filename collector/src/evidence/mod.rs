//! Tamper-evident evidence. Every batch the collector stores is a link of
//! its chain: `hash = SHA-256(prev_hash ‖ seq ‖ batch_id ‖ at ‖ rows)`, where
//! `rows` are a 16-byte digest of every row of the batch (its canonical
//! JSON without `batch_id`, so that a redelivered copy of a row matches),
//! each with its table, sorted. The link is stored with the batch; an hourly
//! Merkle root over each chain's links is stored beside ([`roots`]).
//! [`verify`] recomputes all of it from ClickHouse and names the batch that
//! was altered, inserted or deleted.
//!
//! Each collector process writes its own chain (`evidence.chain_id`, by
//! default the host name and the process's start), so chains never fork.

pub mod roots;
pub mod verify;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use serde::Deserialize;

pub use crate::store::digest::{batch_digests, row_digest, RowDigest, TABLES};
pub use crate::store::evidence::LinkRow;
use crate::store::Batch;

/// The evidence chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// This collector's chain. Unset: a new chain per process (host name and
    /// start time). Set (unique per collector, e.g. the StatefulSet pod
    /// name): the chain continues across restarts.
    pub chain_id: Option<String>,
}

/// The hash before a chain's first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl LinkRow {
    /// The hash this link must have.
    pub fn expected_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(self.seq.to_be_bytes());
        h.update(self.batch_id.as_bytes());
        h.update(self.at.to_be_bytes());
        for (t, d) in self.row_tables.iter().zip(&self.row_digests) {
            h.update([*t]);
            h.update(d);
        }
        hex::encode(h.finalize())
    }
}

/// A collector's chain: where the next link goes.
#[derive(Debug, Clone)]
pub struct Chain {
    pub id: String,
    seq: u64,
    head: String,
}

impl Chain {
    /// A new chain (its first link has `seq` 1 and the genesis hash before it).
    pub fn new(id: String) -> Self {
        Chain { id, seq: 0, head: GENESIS.into() }
    }

    /// Continues a chain after its last stored link.
    pub fn resume(id: String, seq: u64, head: String) -> Self {
        Chain { id, seq, head }
    }

    /// The default id: this host and this process's start.
    pub fn default_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "collector".into());
        format!("{host}/{}", uuid::Uuid::now_v7())
    }

    /// The link for `batch`, advancing the chain; `None` for an empty batch.
    pub fn seal(&mut self, batch: &Batch, at: DateTime<Utc>) -> Option<LinkRow> {
        if batch.rows() == 0 {
            return None;
        }
        let (row_tables, row_digests) = batch_digests(batch).into_iter().unzip();
        let mut link = LinkRow {
            chain_id: self.id.clone(),
            seq: self.seq + 1,
            batch_id: batch.batch_id.clone(),
            at: crate::store::secs(&at),
            prev_hash: self.head.clone(),
            hash: String::new(),
            row_tables,
            row_digests,
        };
        link.hash = link.expected_hash();
        self.seq = link.seq;
        self.head = link.hash.clone();
        Some(link)
    }
}

/// The Merkle root over link hashes (hex) in chain order: pairs hashed
/// together level by level, an odd one carried up.
pub fn merkle_root(hashes: &[String]) -> String {
    if hashes.is_empty() {
        return GENESIS.into();
    }
    let mut level: Vec<Vec<u8>> = hashes.iter().map(|h| hex::decode(h).unwrap_or_else(|_| h.as_bytes().to_vec())).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => Sha256::new().chain_update(a).chain_update(b).finalize().to_vec(),
                [a] => a.clone(),
                _ => unreachable!("chunks of two"),
            })
            .collect();
    }
    hex::encode(&level[0])
}

/// Batches for the evidence tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::store::Batch;

    /// A batch of one opened violation per id (same ids: same content).
    pub fn batch(violation_ids: &[&str]) -> Batch {
        let mut b = Batch::new();
        for id in violation_ids {
            b.violations.push(crate::store::rows::ViolationRow {
                violation_id: id.to_string(),
                asset_id: "a".into(),
                control_id: "c".into(),
                title: "t".into(),
                severity: "high".into(),
                event: "opened".into(),
                at: 1,
                frameworks: vec![],
                evidence: "{}".into(),
                batch_id: b.batch_id.clone(),
            });
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::batch;
    use super::*;

    #[test]
    fn links_chain_and_a_redelivered_row_has_the_same_digest() {
        let mut chain = Chain::new("c1".into());
        let (b1, b2) = (batch(&["v"]), batch(&["v"]));
        assert_eq!(batch_digests(&b1), batch_digests(&b2), "the batch id is not part of a row's digest");
        let l1 = chain.seal(&b1, Utc::now()).unwrap();
        let l2 = chain.seal(&b2, Utc::now()).unwrap();
        assert_eq!((l1.seq, l1.prev_hash.as_str()), (1, GENESIS));
        assert_eq!((l2.seq, l2.prev_hash.as_str()), (2, l1.hash.as_str()));
        assert_eq!(l2.expected_hash(), l2.hash);
        assert!(chain.seal(&Batch::new(), Utc::now()).is_none(), "an empty batch is no link");
        let mut tampered = l2.clone();
        tampered.row_digests[0][0] ^= 1;
        assert_ne!(tampered.expected_hash(), l2.hash);
    }

    #[test]
    fn merkle_roots_cover_every_leaf() {
        let leaves: Vec<String> = (0..5).map(|i| hex::encode(Sha256::digest([i]))).collect();
        let root = merkle_root(&leaves);
        let mut changed = leaves.clone();
        changed[4] = hex::encode(Sha256::digest([9]));
        assert_ne!(merkle_root(&changed), root, "the odd leaf counts");
        assert_eq!(merkle_root(&leaves[..1]), leaves[0]);
    }
}
