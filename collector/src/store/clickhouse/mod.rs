//! The ClickHouse store of the distributed mode. Works with ClickHouse
//! 18.16 and current releases: RowBinary inserts without schema validation
//! (old servers lack the metadata the validator reads), the database chosen
//! per client. One file per part of the [`super::Store`] interface.

mod alerting;
mod attestations;
mod evidence;
mod gaps;
mod keys;
mod retention;
mod slo;
pub mod tls;
mod views;
mod waivers;

use std::collections::HashSet;

use ::clickhouse::{Client, Row};
use chrono::Utc;
use driftwatch_schemas::clickhouse::{self as clickhouse_ddl, MIGRATIONS, MIGRATIONS_TABLE_DDL};
use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use super::{Batch, StoreError, Streams};
use crate::store::config::ClickHouseConfig;
use crate::store::rows::ScoreRow;

/// A connection to one ClickHouse database.
#[derive(Clone)]
pub struct ClickHouseStore {
    /// Writes, migrations, retention (`clickhouse.user`).
    client: Client,
    /// Reads: `clickhouse.reader` when set, else `client`.
    reader: Client,
    url: String,
    database: String,
    /// The cluster whose `_local` tables hold the rows
    /// (`clickhouse.cluster`), for statements that must run on every node.
    cluster: Option<String>,
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
    /// (unless `migrate` is off: a schema applied by hand). On a cluster
    /// (`clickhouse.cluster`) both happen `ON CLUSTER`, on every node.
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let base = base_client(cfg)?;
        let client = base.clone().with_database(&cfg.database);
        // The reader's queries carry no settings: a `readonly=1` profile
        // refuses any.
        let reader = match &cfg.reader {
            Some(r) => client_as(cfg, &r.user, r.password.as_deref())?.with_database(&cfg.database),
            None => client.clone(),
        };
        let store = ClickHouseStore {
            client,
            reader,
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            cluster: cfg.cluster.clone().filter(|c| !c.is_empty()),
        };
        if cfg.migrate {
            let create = match &store.cluster {
                Some(c) => clickhouse_ddl::create_database_on_cluster(c, &cfg.database),
                None => format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database),
            };
            base.query(&create).execute().await.map_err(|e| store.err(e))?;
            store.migrate().await?;
        }
        // After the database is there: the reader's queries name it.
        if let Some(r) = &cfg.reader {
            store.check_reader(&r.user).await?;
        }
        Ok(store)
    }

    /// The client, for queries of other rooms (tests, reports).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Refuses a `clickhouse.reader` that could write: its `readonly`
    /// setting must not be 0.
    async fn check_reader(&self, user: &str) -> Result<(), StoreError> {
        #[derive(Row, Deserialize)]
        struct Value {
            value: String,
        }
        let got = self
            .reader
            .query("SELECT value FROM system.settings WHERE name = 'readonly'")
            .fetch_all::<Value>()
            .await
            .map_err(|e| self.err(e))?;
        match got.first().map(|v| v.value.as_str()) {
            Some("1") | Some("2") => Ok(()),
            other => Err(StoreError::Config(format!(
                "clickhouse.reader: the user {user:?} can write (readonly = {}); give it a read-only profile, as deploy/clickhouse/users.d/driftwatch-reader.xml does",
                other.unwrap_or("unknown")
            ))),
        }
    }

    fn err(&self, source: ::clickhouse::error::Error) -> StoreError {
        StoreError::ClickHouse { url: self.url.clone(), source }
    }

    /// Applies the migrations not yet recorded, in order. Each statement is
    /// idempotent (`IF NOT EXISTS`; an `ADD COLUMN`, which has no such
    /// clause on 18.16, whose column is already there is taken as done), so
    /// a migration interrupted half-way is simply applied again, and two
    /// collectors starting at once on a new database both succeed.
    ///
    /// On a cluster, each migration runs in its cluster form (`_local`
    /// replicated tables and Distributed ones, `ON CLUSTER`), and
    /// `schema_migrations` is itself replicated and Distributed: whichever
    /// node a collector talks to, it knows what the cluster has, including
    /// what `schema --cluster`'s file applied by hand.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let clustered =
            |what: &str, r: Result<Vec<String>, String>| r.map_err(|message| StoreError::Migration { name: what.to_string(), message });
        let table = match &self.cluster {
            Some(c) => clustered("schema_migrations", clickhouse_ddl::cluster_migrations_table(c, &self.database))?,
            None => vec![MIGRATIONS_TABLE_DDL.to_string()],
        };
        for stmt in table {
            self.client.query(&stmt).execute().await.map_err(|e| self.err(e))?;
        }
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
            let statements = match &self.cluster {
                Some(c) => clustered(m.name, m.cluster_statements(c, &self.database))?,
                None => m.statements(),
            };
            for stmt in statements {
                match self.client.query(&stmt).execute().await {
                    Ok(()) => {}
                    Err(e) if already_done(&stmt, &e.to_string()) => {
                        tracing::info!(migration = m.name, "what this statement makes is already there (an earlier or concurrent run)");
                    }
                    Err(e) => {
                        return Err(StoreError::Migration {
                            name: m.name.to_string(),
                            message: format!("{e} (statement: {})", stmt.lines().next().unwrap_or_default()),
                        })
                    }
                }
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
        self.reader.query(sql).fetch_all::<T>().await.map_err(|e| self.err(e))
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
        bind(self.reader.query(sql)).fetch_all::<T>().await.map_err(|e| self.err(e))
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
}

/// Whether `err` says what `stmt` makes (a column it adds; a table or
/// view it creates if not there, racing another collector) exists
/// already: done by an interrupted or concurrent run of the same migration.
fn already_done(stmt: &str, err: &str) -> bool {
    let s = stmt.to_ascii_uppercase();
    (s.contains("ADD COLUMN") || s.contains("IF NOT EXISTS")) && err.contains("already exists")
}

#[async_trait]
impl Streams for ClickHouseStore {
    /// Writes a batch's rows. Returns only when ClickHouse acknowledged
    /// every table.
    async fn write_rows(&self, b: &Batch) -> Result<(), StoreError> {
        // Tables in parallel, in two steps so that a reader never sees a
        // result before the records it was derived from (ClickHouse has no
        // transaction across tables): the agents' records, then what the
        // collector derived. The chain link follows (`write_link`).
        tokio::try_join!(
            self.insert_all("snapshots", &b.snapshots),
            self.insert_all("facts", &b.facts),
            self.insert_all("audit_events", &b.audit),
            self.insert_all("sla_measurements", &b.sla),
        )?;
        tokio::try_join!(
            self.insert_all("evaluations", &b.evaluations),
            self.insert_all("violations", &b.violations),
            self.insert_all("drift_events", &b.drifts),
            self.insert_all("confirmations", &b.confirmations),
        )?;
        Ok(())
    }

    async fn write_link(&self, link: &crate::store::evidence::LinkRow) -> Result<(), StoreError> {
        self.insert_all("evidence_chain", std::slice::from_ref(link)).await
    }

    async fn put_scores(&self, rows: &[ScoreRow]) -> Result<(), StoreError> {
        self.insert_all("scores", rows).await
    }

    async fn put_controls(&self, rows: &[crate::store::rows::ControlRow]) -> Result<(), StoreError> {
        self.insert_all("controls", rows).await
    }

    /// Whether ClickHouse answers (for readiness).
    async fn ping(&self) -> Result<(), StoreError> {
        self.client.query("SELECT 1").execute().await.map_err(|e| self.err(e))
    }

    fn location(&self) -> String {
        format!("ClickHouse at {} (database {})", self.url, self.database)
    }
}

/// A client of the server of `cfg` as `user`.
fn client_as(cfg: &ClickHouseConfig, user: &str, password: Option<&str>) -> Result<Client, StoreError> {
    let client = tls::client(&cfg.tls).map_err(StoreError::Config)?;
    let c = client.with_url(&cfg.url).with_validation(false).with_user(user);
    Ok(match password {
        Some(p) => c.with_password(p),
        None => c,
    })
}

/// The writer's client (`clickhouse.user`), with its settings.
fn base_client(cfg: &ClickHouseConfig) -> Result<Client, StoreError> {
    let mut c = client_as(cfg, &cfg.user, cfg.password.as_deref())?;
    // On a cluster (the Distributed tables of `schema --cluster`), an
    // INSERT returns once the rows are on their shards, not when queued on
    // the node that took them: the consumer commits a batch's offsets only
    // after its write returned, so offsets follow storage there too. On a
    // single server there is no Distributed table and it changes nothing.
    c = c.with_setting("insert_distributed_sync", "1");
    if cfg.query_timeout_secs > 0 {
        c = c.with_setting("max_execution_time", cfg.query_timeout_secs.to_string());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_what_a_statement_makes_already_being_there_counts_as_done() {
        let dup = "Code: 44, e.displayText() = DB::Exception: Cannot add column evaluated_ms: column with this name already exists";
        assert!(super::already_done("ALTER TABLE evaluations ADD COLUMN evaluated_ms UInt16 DEFAULT 0", dup));
        assert!(super::already_done("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory", "Code: 57: Table dw.t already exists."));
        assert!(!super::already_done("ALTER TABLE evaluations ADD COLUMN x UInt8", "Code: 60: Table t doesn't exist"));
        assert!(!super::already_done("CREATE TABLE t (x UInt8) ENGINE = Memory", "Table t already exists"));
    }
}
