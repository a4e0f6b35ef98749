//! The store's settings: which store (`store`), and the ClickHouse
//! connection (`clickhouse`). `config.rs` assembles them with the others.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the collector keeps what it receives and derives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `clickhouse` (the `clickhouse` section; the distributed mode) or
    /// `sqlite` (one file, `sqlite_path`; what `standalone` uses).
    pub kind: StoreKind,
    /// The SQLite database file, for kind `sqlite`.
    pub sqlite_path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { kind: StoreKind::Clickhouse, sqlite_path: PathBuf::from("driftwatch-data/driftwatch.db") }
    }
}

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Clickhouse,
    Sqlite,
}

/// ClickHouse connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP endpoint.
    pub url: String,
    pub database: String,
    pub user: String,
    /// Never logged.
    pub password: Option<String>,
    /// Create the database and apply migrations at start. Off for a
    /// cluster whose schema was applied from `deploy/clickhouse/cluster.sql`.
    pub migrate: bool,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("migrate", &self.migrate)
            .finish()
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "driftwatch".into(),
            user: "default".into(),
            password: None,
            migrate: true,
        }
    }
}
