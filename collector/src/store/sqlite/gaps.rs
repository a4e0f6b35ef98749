//! The SQLite side of [`GapLog`].

use async_trait::async_trait;

use super::{docs, SqliteStore};
use crate::store::gaps::{GapEventRow, GapLog};
use crate::store::StoreError;

#[async_trait]
impl GapLog for SqliteStore {
    async fn put_gap_event(&self, row: &GapEventRow) -> Result<(), StoreError> {
        self.put(vec![row.clone()]).await
    }

    async fn gap_events(&self) -> Result<Vec<GapEventRow>, StoreError> {
        self.with(|c| {
            let mut rows = docs::<GapEventRow>(c, "1", None, &[])?;
            rows.sort_by(|a, b| (&a.gap_id, a.version).cmp(&(&b.gap_id, b.version)));
            Ok(rows)
        })
        .await
    }
}
