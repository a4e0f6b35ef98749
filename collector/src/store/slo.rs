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

/// The latency bound (ms) under which a probe counts as good for `slo`, as
/// the minute rollups count them (50, 100, 250, 500, 1000, 2500, else
/// 5000); `None` for an availability SLI.
pub fn latency_bound_ms(slo: &SloConfig) -> Option<u64> {
    match (slo.sli.kind, slo.sli.latency_ms) {
        (crate::slo::SliKind::Availability, _) => None,
        (_, Some(ms @ (50 | 100 | 250 | 500 | 1000 | 2500))) => Some(ms),
        _ => Some(5000),
    }
}
