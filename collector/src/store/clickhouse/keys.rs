//! The ClickHouse side of [`KeyRing`].

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::keys::{AssetKeyRow, KeyRing};
use crate::store::StoreError;

#[async_trait]
impl KeyRing for ClickHouseStore {
    async fn put_asset_keys(&self, rows: &[AssetKeyRow]) -> Result<(), StoreError> {
        self.insert_rows("asset_keys", rows).await
    }

    async fn asset_keys(&self, asset: Option<&str>) -> Result<Vec<AssetKeyRow>, StoreError> {
        let a = asset.unwrap_or_default().to_string();
        self.fetch_bound(driftwatch_schemas::clickhouse::ASSET_KEYS_SQL, |q| q.bind(a.as_str()).bind(a.as_str())).await
    }
}
