//! SLO reads and the minute rollups they come from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// What the SLO evaluator reads.
#[async_trait]
pub trait SloStore {
    /// Recomputes the minute rollups of [from, to) from the raw results.
    async fn refresh_sla_rollups(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), StoreError>;

    /// The minutes of `probes` since `from`: total results and good ones
    /// (successful, and for a latency SLI (`latency_ms`) answered within
    /// [`latency_bucket_ms`]).
    async fn slo_minutes(&self, probes: &[String], latency_ms: Option<u64>, from: DateTime<Utc>) -> Result<Vec<Minute>, StoreError>;

    /// The last minute each of `probes` reported (absent: never).
    async fn probes_last_seen(&self, probes: &[String]) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;

    /// When each asset last sent a snapshot or probe result.
    async fn assets_last_seen(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}

/// The latency bound (ms) a probe must answer within to count as good, as
/// the minute rollups count them: `latency_ms` rounded to one of their
/// buckets (50, 100, 250, 500, 1000, 2500, else 5000).
pub fn latency_bucket_ms(latency_ms: u64) -> u64 {
    match latency_ms {
        ms @ (50 | 100 | 250 | 500 | 1000 | 2500) => ms,
        _ => 5000,
    }
}

/// One minute of an SLO's probes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Minute {
    pub at: DateTime<Utc>,
    pub total: u64,
    pub good: u64,
}
