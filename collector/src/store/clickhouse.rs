//! The ClickHouse store. Works with ClickHouse 18.16 and current releases:
//! RowBinary inserts without schema validation (old servers lack the
//! metadata the validator reads), the database chosen per client.

use std::collections::{BTreeMap, HashSet};

use ::clickhouse::{Client, Row};
use chrono::{DateTime, TimeZone, Utc};
use driftwatch_schemas::clickhouse::{MIGRATIONS, MIGRATIONS_TABLE_DDL};
use serde::{Deserialize, Serialize};

use super::rows::{CurrentRow, HistoryRow, PostureRow, ResultAtRow, StatusAtRow};
use super::{Batch, StoreError};
use crate::config::ClickHouseConfig;
use crate::eval::{PostureEntry, Status};
use crate::score::effectiveness::History;

/// A connection to one ClickHouse database.
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    url: String,
}

#[derive(Row, Deserialize)]
struct AppliedRow {
    version: u32,
}

#[derive(Row, Serialize)]
struct MigrationRow {
    version: u32,
    name: String,
    checksum: String,
    applied_at: u32,
}

impl ClickHouseStore {
    /// Connects, creates the database if needed and applies migrations
    /// (unless `migrate` is off: a cluster's schema is applied by hand).
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let base = base_client(cfg);
        let store = ClickHouseStore { client: base.clone().with_database(&cfg.database), url: cfg.url.clone() };
        if !cfg.migrate {
            return Ok(store);
        }
        base.query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database.replace('`', "")))
            .execute()
            .await
            .map_err(|e| store.err(e))?;
        store.migrate().await?;
        Ok(store)
    }

    /// Whether ClickHouse answers (for readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client.query("SELECT 1").execute().await.map_err(|e| self.err(e))
    }

    /// The client, for queries of other rooms (tests, reports).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn err(&self, source: ::clickhouse::error::Error) -> StoreError {
        StoreError::ClickHouse { url: self.url.clone(), source }
    }

    /// Applies the migrations not yet recorded, in order. Each statement is
    /// idempotent (`IF NOT EXISTS`), so a migration interrupted half-way is
    /// simply applied again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.client.query(MIGRATIONS_TABLE_DDL).execute().await.map_err(|e| self.err(e))?;
        let applied: HashSet<u32> = self
            .client
            .query("SELECT version FROM schema_migrations")
            .fetch_all::<AppliedRow>()
            .await
            .map_err(|e| self.err(e))?
            .into_iter()
            .map(|r| r.version)
            .collect();
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            for stmt in m.statements() {
                self.client.query(&stmt).execute().await.map_err(|e| StoreError::Migration {
                    name: m.name.to_string(),
                    message: format!("{e} (statement: {})", stmt.lines().next().unwrap_or_default()),
                })?;
            }
            let mut ins = self.client.insert::<MigrationRow>("schema_migrations").await.map_err(|e| self.err(e))?;
            ins.write(&MigrationRow {
                version: m.version,
                name: m.name.to_string(),
                checksum: m.checksum(),
                applied_at: Utc::now().timestamp() as u32,
            })
            .await
            .map_err(|e| self.err(e))?;
            ins.end().await.map_err(|e| self.err(e))?;
            tracing::info!(migration = m.name, "applied ClickHouse migration");
        }
        Ok(())
    }

    /// Runs a query and reads every row.
    pub(crate) async fn fetch<T>(&self, sql: &str) -> Result<Vec<T>, StoreError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead,
    {
        self.client.query(sql).fetch_all::<T>().await.map_err(|e| self.err(e))
    }

    /// Runs a query with bound parameters and reads every row.
    pub(crate) async fn fetch_bound<T>(
        &self,
        sql: &str,
        bind: impl FnOnce(::clickhouse::query::Query) -> ::clickhouse::query::Query,
    ) -> Result<Vec<T>, StoreError>
    where
        T: ::clickhouse::RowOwned + ::clickhouse::RowRead,
    {
        bind(self.client.query(sql)).fetch_all::<T>().await.map_err(|e| self.err(e))
    }

    /// Runs a statement with bound parameters.
    pub(crate) async fn execute_bound(
        &self,
        sql: &str,
        bind: impl FnOnce(::clickhouse::query::Query) -> ::clickhouse::query::Query,
    ) -> Result<(), StoreError> {
        bind(self.client.query(sql)).execute().await.map_err(|e| self.err(e))
    }

    /// Inserts rows into `table` (nothing for none).
    pub(crate) async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: Serialize + for<'a> Row<Value<'a> = T>,
    {
        self.insert_all(table, rows).await
    }

    async fn insert_all<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: Serialize + for<'a> Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut ins = self.client.insert::<T>(table).await.map_err(|e| self.err(e))?;
        for r in rows {
            ins.write(r).await.map_err(|e| self.err(e))?;
        }
        ins.end().await.map_err(|e| self.err(e))
    }

    /// Writes a batch. Returns only when ClickHouse acknowledged every table.
    pub async fn write(&self, b: &Batch) -> Result<(), StoreError> {
        self.insert_all("snapshots", &b.snapshots).await?;
        self.insert_all("facts", &b.facts).await?;
        self.insert_all("audit_events", &b.audit).await?;
        self.insert_all("sla_measurements", &b.sla).await?;
        self.insert_all("evaluations", &b.evaluations).await?;
        self.insert_all("violations", &b.violations).await?;
        self.insert_all("drift_events", &b.drifts).await?;
        if let Some(link) = &b.link {
            self.insert_all("evidence_chain", std::slice::from_ref(link)).await?;
        }
        Ok(())
    }

    /// The latest posture of every (asset, control) and its open violation.
    pub async fn load_posture(&self) -> Result<Vec<(String, String, PostureEntry)>, StoreError> {
        let sql = driftwatch_schemas::clickhouse::LATEST_POSTURE_SQL;
        let rows = self.client.query(sql).fetch_all::<PostureRow>().await.map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let status = Status::parse(&r.status)?;
                let violation_id = (!r.violation_id.is_empty()).then_some(r.violation_id);
                let since = Utc.timestamp_opt(i64::from(r.since), 0).single()?;
                let last_evaluated = Utc.timestamp_opt(i64::from(r.last_evaluated), 0).single()?;
                Some((r.asset_id, r.control_id, PostureEntry::restored(status, since, last_evaluated, violation_id)))
            })
            .collect())
    }

    /// The latest result of every (asset, control) with the asset's labels;
    /// `since` is when a failing control's violation opened, else its last
    /// evaluation.
    pub async fn current_results(&self) -> Result<Vec<crate::score::Result>, StoreError> {
        let rows = self
            .client
            .query(driftwatch_schemas::clickhouse::CURRENT_RESULTS_SQL)
            .fetch_all::<CurrentRow>()
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let status = Status::parse(&r.status)?;
                let since = if r.opened_at > 0 && status == Status::Fail { r.opened_at } else { r.last_evaluated };
                Some(crate::score::Result {
                    labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                    asset_id: r.asset_id,
                    control_id: r.control_id,
                    status,
                    since: Utc.timestamp_opt(i64::from(since), 0).single()?,
                    evidence_at: (r.evidence_at > 0).then(|| super::time(r.evidence_at)),
                })
            })
            .collect())
    }

    /// The latest drift events, newest first, of `asset` or of all.
    pub async fn recent_drifts(&self, asset: Option<&str>, limit: u32) -> Result<Vec<super::rows::DriftRow>, StoreError> {
        let a = asset.unwrap_or_default().to_string();
        self.fetch_bound(driftwatch_schemas::clickhouse::RECENT_DRIFT_SQL, |q| q.bind(a.clone()).bind(a.clone()).bind(limit)).await
    }

    /// The posture at an instant (the last evaluation at or before it),
    /// with the assets' labels as of then; `since` is that evaluation's time.
    pub async fn results_at(&self, at: DateTime<Utc>) -> Result<Vec<crate::score::Result>, StoreError> {
        let secs = at.timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        // An instant given to the second covers that whole second.
        let ms = if at.timestamp_subsec_millis() == 0 { 999 } else { super::rows::millis(&at) };
        let rows: Vec<ResultAtRow> =
            self.fetch_bound(driftwatch_schemas::clickhouse::RESULTS_AT_SQL, |q| q.bind(secs).bind(secs).bind(ms).bind(secs)).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(crate::score::Result {
                    status: Status::parse(&r.status)?,
                    since: Utc.timestamp_opt(i64::from(r.last_evaluated), 0).single()?,
                    evidence_at: (r.evidence_at > 0).then(|| super::time(r.evidence_at)),
                    labels: r.label_keys.into_iter().zip(r.label_values).collect(),
                    asset_id: r.asset_id,
                    control_id: r.control_id,
                })
            })
            .collect())
    }

    /// Every (asset, control)'s status at `from` and its evaluations in
    /// (from, to], for operating effectiveness.
    pub async fn histories(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<History>, StoreError> {
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
}

fn base_client(cfg: &ClickHouseConfig) -> Client {
    let mut c = Client::default().with_url(&cfg.url).with_validation(false).with_user(&cfg.user);
    if let Some(p) = &cfg.password {
        c = c.with_password(p);
    }
    c
}
