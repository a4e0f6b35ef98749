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
    /// Store what a snapshot changes only (default): the facts whose
    /// values changed and the results that did, the snapshot's row
    /// confirming the rest, so that an unchanged full snapshot is one row.
    /// `false` stores every fact and result of every snapshot again (the
    /// layout before 0017; the reads answer the same either way).
    pub compact_snapshots: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { kind: StoreKind::Clickhouse, sqlite_path: PathBuf::from("driftwatch-data/driftwatch.db"), compact_snapshots: true }
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
    /// Create the database and apply migrations at start (on a cluster,
    /// `ON CLUSTER`). Off for a schema applied by hand
    /// (`deploy/clickhouse/cluster.sql`).
    pub migrate: bool,
    /// For an `https://` URL: the CA to trust and the client certificate.
    pub tls: ClickHouseTls,
    /// ClickHouse stops a query of the collector's that runs longer
    /// (`max_execution_time`); 0 for no limit. A report or a posture over a
    /// long period on a large fleet is the reader most likely to reach it.
    pub query_timeout_secs: u64,
    /// The cluster's name (`remote_servers`) when the schema is the
    /// cluster form (`<table>_local` on every node, `<table>` Distributed
    /// over them): migrations run in that form and retention drops months
    /// of the `_local` tables, `ON CLUSTER`.
    pub cluster: Option<String>,
    /// A read-only user for the collector's reads (the API, posture,
    /// reports, the tasks' lookups); writes and migrations stay with
    /// `user`. Checked at start: a reader that can write is refused.
    pub reader: Option<ClickHouseReader>,
}

/// The read-only ClickHouse user (`clickhouse.reader`). Its queries carry
/// no settings (a `readonly=1` profile refuses any): the limits, such as
/// `max_execution_time`, are its profile's (see
/// `deploy/clickhouse/users.d/driftwatch-reader.xml`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseReader {
    pub user: String,
    /// Never logged.
    pub password: Option<String>,
}

impl std::fmt::Debug for ClickHouseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseReader").field("user", &self.user).field("password", &self.password.as_ref().map(|_| "***")).finish()
    }
}

/// TLS to ClickHouse (`clickhouse.tls`), for an `https://` URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseTls {
    /// PEM file of the CA(s) that sign the server's certificate; without
    /// it, the public web PKI's roots (webpki-roots) are trusted.
    pub ca_file: Option<PathBuf>,
    /// PEM files of a client certificate (chain) and its key, for a server
    /// that asks for one (mutual TLS). Both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClickHouseTls {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("migrate", &self.migrate)
            .field("tls", &self.tls)
            .field("query_timeout_secs", &self.query_timeout_secs)
            .field("cluster", &self.cluster)
            .field("reader", &self.reader)
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
            tls: ClickHouseTls::default(),
            query_timeout_secs: 300,
            cluster: None,
            reader: None,
        }
    }
}
