//! The SQLite side of [`SloStore`]: minutes computed from the raw probe
//! results when read (a single node has few), so there is no rollup to
//! refresh.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::waivers::last_seen;
use super::{json_list, SqliteStore};
use crate::store::slo::{latency_bucket_ms, Minute, SloStore};
use crate::store::{secs, time, StoreError};

/// Probe results of `?1` (a JSON list of probes), host metrics excluded.
const PROBES: &str = "tbl = 'sla_measurements' AND subject IN (SELECT value FROM json_each(?1)) AND json_extract(doc, '$.kind') != 'host'";

#[async_trait]
impl SloStore for SqliteStore {
    async fn refresh_sla_rollups(&self, _from: DateTime<Utc>, _to: DateTime<Utc>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn slo_minutes(&self, probes: &[String], latency_ms: Option<u64>, from: DateTime<Utc>) -> Result<Vec<Minute>, StoreError> {
        let (probes, from) = (json_list(probes), i64::from(secs(&from)));
        // Availability: every success is good (no latency bound).
        let bound_us = latency_ms.map_or(i64::MAX, |ms| latency_bucket_ms(ms) as i64 * 1000);
        self.with(move |c| {
            let sql = format!(
                "SELECT at / 60 * 60 AS minute, count(*), \
                        sum(json_extract(doc, '$.success') = 1 AND json_extract(doc, '$.latency_us') <= ?3) \
                 FROM rows WHERE {PROBES} AND at >= ?2 GROUP BY minute ORDER BY minute"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params![probes, from, bound_us], |r| {
                let (minute, total, good): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok(Minute { at: time(minute.clamp(0, i64::from(u32::MAX)) as u32), total: total.max(0) as u64, good: good.max(0) as u64 })
            })?;
            rows.collect()
        })
        .await
    }

    async fn probes_last_seen(&self, probes: &[String]) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let probes = json_list(probes);
        self.with(move |c| {
            let sql = format!("SELECT subject, max(at) / 60 * 60 FROM rows WHERE {PROBES} GROUP BY subject");
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([probes], |r| {
                let (probe, minute): (String, i64) = (r.get(0)?, r.get(1)?);
                Ok((probe, time(minute.clamp(0, i64::from(u32::MAX)) as u32)))
            })?;
            rows.collect()
        })
        .await
    }

    async fn assets_last_seen(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        self.with(|c| Ok(last_seen(c, false)?.into_iter().map(|(a, t)| (a, time(t))).collect())).await
    }
}
