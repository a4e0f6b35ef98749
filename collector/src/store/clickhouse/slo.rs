//! The ClickHouse side of [`SloStore`]: minute rollups (`sla_minutes`)
//! refreshed from the raw results, read per SLO.

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use async_trait::async_trait;

use super::ClickHouseStore;
use crate::store::slo::{latency_bucket_ms, Minute, SloStore};
use crate::store::{secs, time, StoreError};

#[derive(Debug, Row, Deserialize)]
struct MinuteRow {
    minute: u32,
    total: u64,
    good: u64,
    le_50ms: u64,
    le_100ms: u64,
    le_250ms: u64,
    le_500ms: u64,
    le_1000ms: u64,
    le_2500ms: u64,
    le_5000ms: u64,
}

#[derive(Debug, Row, Deserialize)]
struct ProbeSeenRow {
    probe_id: String,
    last_minute: u32,
}

#[derive(Debug, Row, Deserialize)]
struct AssetSeenRow {
    asset_id: String,
    last_seen: u32,
}

#[async_trait]
impl SloStore for ClickHouseStore {
    /// Recomputes the minute rollups of [from, to) from the raw results.
    async fn refresh_sla_rollups(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), StoreError> {
        let version = Utc::now().timestamp_millis().max(0) as u64;
        self.execute_bound(driftwatch_schemas::clickhouse::SLA_ROLLUP_SQL, |q| q.bind(version).bind(secs(&from)).bind(secs(&to))).await
    }

    async fn slo_minutes(&self, probes: &[String], latency_ms: Option<u64>, from: DateTime<Utc>) -> Result<Vec<Minute>, StoreError> {
        let rows: Vec<MinuteRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::SLO_MINUTES_SQL, |q| q.bind(probes.to_vec()).bind(secs(&from))).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let good = match latency_ms.map(latency_bucket_ms) {
                    None => r.good,
                    Some(50) => r.le_50ms,
                    Some(100) => r.le_100ms,
                    Some(250) => r.le_250ms,
                    Some(500) => r.le_500ms,
                    Some(1000) => r.le_1000ms,
                    Some(2500) => r.le_2500ms,
                    Some(_) => r.le_5000ms,
                };
                Minute { at: time(r.minute), total: r.total, good }
            })
            .collect())
    }

    /// The last minute each of `probes` reported (absent: never).
    async fn probes_last_seen(&self, probes: &[String]) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<ProbeSeenRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::PROBE_LAST_SEEN_SQL, |q| q.bind(probes.to_vec())).await?;
        Ok(rows.into_iter().map(|r| (r.probe_id, time(r.last_minute))).collect())
    }

    /// When each asset last sent a snapshot or probe result.
    async fn assets_last_seen(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<AssetSeenRow> = self.fetch(driftwatch_schemas::clickhouse::ASSET_LAST_SEEN_SQL).await?;
        Ok(rows.into_iter().map(|r| (r.asset_id, time(r.last_seen))).collect())
    }
}
