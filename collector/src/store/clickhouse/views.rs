//! The ClickHouse side of [`Views`]: the queries of `schemas/clickhouse/queries`.

use std::collections::BTreeMap;

use ::clickhouse::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use async_trait::async_trait;
use chrono::TimeZone;

use super::ClickHouseStore;
use crate::store::rows::{CurrentRow, HistoryRow, PostureRow, ResultAtRow, StatusAtRow};
use crate::store::values::Status;
use crate::store::views::{AssetInfo, ControlResult, EvaluationAt, History, LatestStatus, SharedLabels, Views, Violation};
use crate::store::{secs, time, StoreError};

#[derive(Debug, Row, Deserialize)]
struct ViolationLifeRow {
    violation_id: String,
    asset_id: String,
    control_id: String,
    title: String,
    severity: String,
    frameworks: Vec<String>,
    opened_at: u32,
    resolved_at: u32,
    last_event: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
}

#[derive(Debug, Row, Deserialize)]
struct AssetRow {
    asset_id: String,
    kind: String,
    hostname: String,
    label_keys: Vec<String>,
    label_values: Vec<String>,
    agent_id: String,
    agent_version: String,
    last_collected: u32,
    last_received: u32,
    last_sequence: i64,
    last_heartbeat: u32,
}

#[async_trait]
impl Views for ClickHouseStore {
    /// The latest posture of every (asset, control) and its open violation.
    async fn load_posture(&self) -> Result<Vec<LatestStatus>, StoreError> {
        let sql = driftwatch_schemas::clickhouse::LATEST_POSTURE_SQL;
        let rows = self.fetch::<PostureRow>(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let status = Status::parse(&r.status)?;
                let violation_id = (!r.violation_id.is_empty()).then_some(r.violation_id);
                let since = Utc.timestamp_opt(i64::from(r.since), 0).single()?;
                let last_evaluated = Utc.timestamp_opt(i64::from(r.last_evaluated), 0).single()?;
                Some(LatestStatus { asset_id: r.asset_id, control_id: r.control_id, status, since, last_evaluated, violation_id })
            })
            .collect())
    }

    /// The latest result of every (asset, control) with the asset's labels;
    /// `since` is when a failing control's violation opened, else its last
    /// evaluation.
    async fn current_results(&self) -> Result<Vec<ControlResult>, StoreError> {
        let rows = self
            .client
            .query(driftwatch_schemas::clickhouse::CURRENT_RESULTS_SQL)
            .fetch_all::<CurrentRow>()
            .await
            .map_err(|e| self.err(e))?;
        let mut shared = SharedLabels::default();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let status = Status::parse(&r.status)?;
                let since = if r.opened_at > 0 && status == Status::Fail { r.opened_at } else { r.last_evaluated };
                Some(ControlResult {
                    labels: shared.of(&r.asset_id, || r.label_keys.into_iter().zip(r.label_values).collect()),
                    asset_id: r.asset_id,
                    control_id: r.control_id,
                    status,
                    since: Utc.timestamp_opt(i64::from(since), 0).single()?,
                    evidence_at: (r.evidence_at > 0).then(|| time(r.evidence_at)),
                })
            })
            .collect())
    }

    /// The latest drift events, newest first, of `asset` or of all.
    async fn recent_drifts(&self, asset: Option<&str>, limit: u32) -> Result<Vec<crate::store::rows::DriftRow>, StoreError> {
        let a = asset.unwrap_or_default().to_string();
        self.fetch_bound(driftwatch_schemas::clickhouse::RECENT_DRIFT_SQL, |q| q.bind(a.clone()).bind(a.clone()).bind(limit)).await
    }

    /// The posture at an instant (the last evaluation at or before it),
    /// with the assets' labels as of then; `since` is that evaluation's time.
    async fn results_at(&self, at: DateTime<Utc>) -> Result<Vec<ControlResult>, StoreError> {
        let secs = at.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        // An instant given to the second covers that whole second.
        let ms = if at.timestamp_subsec_millis() == 0 { 999 } else { crate::store::rows::millis(&at) };
        let rows: Vec<ResultAtRow> = self
            .fetch_bound(driftwatch_schemas::clickhouse::RESULTS_AT_SQL, |q| {
                q.bind(secs).bind(secs).bind(ms).bind(secs).bind(secs).bind(ms).bind(secs)
            })
            .await?;
        let mut shared = SharedLabels::default();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ControlResult {
                    status: Status::parse(&r.status)?,
                    since: Utc.timestamp_opt(i64::from(r.last_evaluated), 0).single()?,
                    evidence_at: (r.evidence_at > 0).then(|| time(r.evidence_at)),
                    labels: shared.of(&r.asset_id, || r.label_keys.into_iter().zip(r.label_values).collect()),
                    asset_id: r.asset_id,
                    control_id: r.control_id,
                })
            })
            .collect())
    }

    /// Every (asset, control)'s status at `from` and its evaluations in
    /// (from, to], for operating effectiveness.
    async fn histories(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<History>, StoreError> {
        let secs = |t: DateTime<Utc>| t.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        let initial = self
            .client
            .query(driftwatch_schemas::clickhouse::STATUS_AT_SQL)
            .bind(secs(from))
            .fetch_all::<StatusAtRow>()
            .await
            .map_err(|e| self.err(e))?;
        let mut map: BTreeMap<(String, String), History> = BTreeMap::new();
        for r in initial {
            let initial = Status::parse(&r.status);
            map.insert(
                (r.asset_id.clone(), r.control_id.clone()),
                History { asset_id: r.asset_id, control_id: r.control_id, initial, changes: Vec::new() },
            );
        }
        let mut cursor = self
            .client
            .query(driftwatch_schemas::clickhouse::STATUS_HISTORY_SQL)
            .bind(secs(from))
            .bind(secs(to))
            .fetch::<HistoryRow>()
            .map_err(|e| self.err(e))?;
        while let Some(r) = cursor.next().await.map_err(|e| self.err(e))? {
            let (Some(status), Some(at)) = (Status::parse(&r.status), Utc.timestamp_opt(i64::from(r.evaluated_at), 0).single()) else {
                continue;
            };
            let h = map.entry((r.asset_id.clone(), r.control_id.clone())).or_insert_with(|| History {
                asset_id: r.asset_id,
                control_id: r.control_id,
                initial: None,
                changes: Vec::new(),
            });
            // Keep change points only: the history of a long period stays small.
            if h.changes.last().map(|c| c.1).or(h.initial) != Some(status) {
                h.changes.push((at, status));
            }
        }
        Ok(map.into_values().collect())
    }

    /// Every violation, newest first.
    async fn violations(&self) -> Result<Vec<Violation>, StoreError> {
        let rows: Vec<ViolationLifeRow> = self.fetch(driftwatch_schemas::clickhouse::VIOLATIONS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| Violation {
                status: if r.last_event == "resolved" { "resolved".into() } else { "open".into() },
                opened_at: (r.opened_at > 0).then(|| time(r.opened_at)),
                resolved_at: (r.resolved_at > 0).then(|| time(r.resolved_at)),
                labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                violation_id: r.violation_id,
                asset_id: r.asset_id,
                control_id: r.control_id,
                title: r.title,
                severity: r.severity,
                frameworks: r.frameworks,
            })
            .collect())
    }

    /// Every asset with a snapshot.
    async fn assets(&self) -> Result<Vec<AssetInfo>, StoreError> {
        let rows: Vec<AssetRow> = self.fetch(driftwatch_schemas::clickhouse::ASSETS_SQL).await?;
        Ok(rows
            .into_iter()
            .map(|r| AssetInfo {
                labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                last_snapshot_at: time(r.last_collected),
                last_received_at: time(r.last_received),
                last_heartbeat_at: (r.last_heartbeat > 0).then(|| time(r.last_heartbeat)),
                asset_id: r.asset_id,
                kind: r.kind,
                hostname: r.hostname,
                agent_id: r.agent_id,
                agent_version: r.agent_version,
                last_sequence: r.last_sequence,
            })
            .collect())
    }

    /// The audit event `id` of `asset`, if there is one (the record behind
    /// a detection's result).
    async fn audit_event(&self, asset: &str, id: &str) -> Result<Option<crate::store::rows::AuditRow>, StoreError> {
        let (a, i) = (asset.to_string(), id.to_string());
        let rows: Vec<crate::store::rows::AuditRow> =
            self.fetch_bound("SELECT ?fields FROM audit_events WHERE asset_id = ? AND event_id = ? LIMIT 1", |q| q.bind(a).bind(i)).await?;
        Ok(rows.into_iter().next())
    }

    /// The last evaluation of `control` on `asset` at or before `at`.
    async fn evaluation_at(&self, asset: &str, control: &str, at: DateTime<Utc>) -> Result<Option<EvaluationAt>, StoreError> {
        let (a, c, t) = (asset.to_string(), control.to_string(), secs(&at));
        let rows: Vec<EvaluationAt> = self
            .fetch_bound(driftwatch_schemas::clickhouse::EVALUATION_AT_SQL, |q| q.bind(&a).bind(&c).bind(t).bind(&a).bind(&c).bind(t))
            .await?;
        Ok(rows.into_iter().next())
    }
}
