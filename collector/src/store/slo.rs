//! SLO reads and the minute rollups they come from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::slo::{Minute, SloConfig};

/// What the SLO evaluator reads.
#[async_trait]
pub trait SloStore {
    /// Recomputes the minute rollups of [from, to) from the raw results.
    async fn refresh_sla_rollups(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), StoreError>;

    /// The SLO's minutes since `from`: total probes and good ones (by its SLI).
    async fn slo_minutes(&self, slo: &SloConfig, from: DateTime<Utc>) -> Result<Vec<Minute>, StoreError>;

    /// The last minute each of `probes` reported (absent: never).
    async fn probes_last_seen(&self, probes: &[String]) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// When each asset last sent a snapshot or probe result.
    async fn assets_last_seen(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}
