//! Gaps tracked to closure: every change of a gap's tracking is a row
//! holding the whole tracking after it; the latest version wins and the
//! rest is its history.

use ::clickhouse::Row;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A gap's tracking after one change.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct GapEventRow {
    /// `<framework>:<requirement>`.
    pub gap_id: String,
    /// `open`, `in_progress`, `risk_accepted` or `resolved`.
    pub state: String,
    /// Empty: nobody.
    pub assignee: String,
    pub note: String,
    /// The waiver that accepted the risk (`risk_accepted`), else empty.
    pub waiver_id: String,
    pub changed_by: String,
    pub changed_at: u32,
    /// Milliseconds of the change: the latest version wins.
    pub version: u64,
}

/// Gap tracking.
#[async_trait]
pub trait GapLog {
    /// Writes a change of a gap's tracking.
    async fn put_gap_event(&self, row: &GapEventRow) -> Result<(), StoreError>;

    /// Every change of every gap, ordered by gap and version.
    async fn gap_events(&self) -> Result<Vec<GapEventRow>, StoreError>;
}
