//! Agents' keys per asset: which key's records are an asset's word
//! (`pinned`), which wait for an operator (`pending`), which are refused
//! (`revoked`). Every decision is a new version; the latest wins.

use ::clickhouse::Row;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A version of one key's standing for one asset.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct AssetKeyRow {
    pub asset_id: String,
    /// `sha256:<hex>` of the public key.
    pub fingerprint: String,
    /// The `ed25519:<base64>` signer header; empty for a key enrolled by
    /// fingerprint before its agent first sent.
    pub public_key: String,
    /// `pinned`, `pending` or `revoked`.
    pub status: String,
    /// When a record signed by it was first seen (or it was enrolled).
    pub first_seen: u32,
    pub decided_at: u32,
    /// `first use`, an API key's name, or who ran the CLI.
    pub decided_by: String,
    /// Why: the operator's comment, or what the collector saw.
    pub reason: String,
    /// Milliseconds of the decision: the latest version wins.
    pub version: u64,
}

/// The keys of assets.
#[async_trait]
pub trait KeyRing {
    /// Writes new versions of keys' standing.
    async fn put_asset_keys(&self, rows: &[AssetKeyRow]) -> Result<(), StoreError>;

    /// The latest version of every key of `asset` (of every asset: `None`),
    /// ordered by asset and fingerprint.
    async fn asset_keys(&self, asset: Option<&str>) -> Result<Vec<AssetKeyRow>, StoreError>;
}
