//! The SQLite side of [`KeyRing`].

use async_trait::async_trait;

use super::{docs, SqliteStore};
use crate::store::keys::{AssetKeyRow, KeyRing};
use crate::store::StoreError;

#[async_trait]
impl KeyRing for SqliteStore {
    async fn put_asset_keys(&self, rows: &[AssetKeyRow]) -> Result<(), StoreError> {
        self.put(rows.to_vec()).await
    }

    async fn asset_keys(&self, asset: Option<&str>) -> Result<Vec<AssetKeyRow>, StoreError> {
        let asset = asset.unwrap_or_default().to_string();
        self.with(move |c| {
            let mut rows = docs::<AssetKeyRow>(c, "?1 = '' OR asset_id = ?1", Some("asset_id, subject"), &[&asset])?;
            rows.sort_by(|a, b| (&a.asset_id, &a.fingerprint).cmp(&(&b.asset_id, &b.fingerprint)));
            Ok(rows)
        })
        .await
    }
}
