//! The ClickHouse store. Works with ClickHouse 18.16 and current releases:
//! RowBinary inserts without schema validation (old servers lack the
//! metadata the validator reads), the database chosen per client.

use std::collections::HashSet;

use ::clickhouse::{Client, Row};
use chrono::{TimeZone, Utc};
use driftwatch_schemas::clickhouse::{MIGRATIONS, MIGRATIONS_TABLE_DDL};
use serde::{Deserialize, Serialize};

use super::{rows::PostureRow, Batch, StoreError};
use crate::config::ClickHouseConfig;
use crate::eval::{PostureEntry, Status};

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
    /// Connects, creates the database if needed and applies migrations.
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let base = base_client(cfg);
        let store = ClickHouseStore { client: base.clone().with_database(&cfg.database), url: cfg.url.clone() };
        base.query(&format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database.replace('`', "")))
            .execute()
            .await
            .map_err(|e| store.err(e))?;
        store.migrate().await?;
        Ok(store)
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
                Some((r.asset_id, r.control_id, PostureEntry { status, since, violation_id }))
            })
            .collect())
    }
}

fn base_client(cfg: &ClickHouseConfig) -> Client {
    let mut c = Client::default().with_url(&cfg.url).with_validation(false).with_user(&cfg.user);
    if let Some(p) = &cfg.password {
        c = c.with_password(p);
    }
    c
}
