//! The ClickHouse side of [`GapLog`].

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::gaps::{GapEventRow, GapLog};
use crate::store::StoreError;

#[async_trait]
impl GapLog for ClickHouseStore {
    async fn put_gap_event(&self, row: &GapEventRow) -> Result<(), StoreError> {
        self.insert_rows("gap_events", std::slice::from_ref(row)).await
    }

    async fn gap_events(&self) -> Result<Vec<GapEventRow>, StoreError> {
        self.fetch(driftwatch_schemas::clickhouse::GAP_EVENTS_SQL).await
    }
}
