//! The commands of `driftwatch-collector`, one file per group; `main.rs`
//! is the command table and dispatches here. What several commands share
//! (opening the store, loading packs and waivers, printing) is below.

pub mod attest;
pub mod dead_letters;
pub mod evidence;
pub mod gap;
pub mod keys;
pub mod policies;
pub mod reads;
pub mod serve;
pub mod setup;
pub mod silence;
pub mod waiver;

use std::path::Path;

use anyhow::Context;
use clap::ValueEnum;
use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::{policy, store, waiver as waivers};

/// How a command prints its answer.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Opens the configured store (ClickHouse, migrated unless off; or SQLite).
pub async fn connect(cfg: &CollectorConfig) -> anyhow::Result<SharedStore> {
    store::open(&cfg.store, &cfg.clickhouse).await.with_context(|| match cfg.store.kind {
        driftwatch_collector::config::StoreKind::Clickhouse => {
            format!("connecting to ClickHouse at {} (database {})", cfg.clickhouse.url, cfg.clickhouse.database)
        }
        driftwatch_collector::config::StoreKind::Sqlite => format!("opening the SQLite database {}", cfg.store.sqlite_path.display()),
    })
}

/// The configuration, its policies and a connection to its store.
pub async fn open_store(config: Option<&Path>) -> anyhow::Result<(CollectorConfig, policy::PolicySet, SharedStore)> {
    let cfg = CollectorConfig::load(config)?;
    let set = load_policies(&cfg.policies)?;
    let store = connect(&cfg).await?;
    Ok((cfg, set, store))
}

/// Prints `value` as JSON, or the text `table` renders.
pub fn print_out<T: serde::Serialize>(format: OutputFormat, value: &T, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        OutputFormat::Text => print!("{}", table()),
    }
    Ok(())
}

/// The waivers: those declared beside the packs, and those stored.
pub async fn load_waivers(dir: &Path, store: &SharedStore) -> anyhow::Result<waivers::Waivers> {
    let declared = waivers::load_dir(dir).map_err(|e| anyhow::anyhow!("waiver files in {} are invalid:\n{e}", dir.display()))?;
    let stored = waivers::Waiver::from_rows(store.waivers().await.context("reading stored waivers")?);
    Ok(waivers::Waivers::new(waivers::sync::merge(&declared, &stored)))
}

/// Validates the declared waivers (an error fails, a flag warns); returns
/// how many there are.
pub fn check_waivers(dir: &Path, set: &policy::PolicySet) -> anyhow::Result<usize> {
    let declared = waivers::load_dir(dir).map_err(|e| anyhow::anyhow!("waiver files in {} are invalid:\n{e}", dir.display()))?;
    for f in waivers::flags(&declared, set) {
        eprintln!("warning: {f}");
    }
    Ok(declared.len())
}

pub fn load_policies(dir: &Path) -> anyhow::Result<policy::PolicySet> {
    policy::load_dir(dir).map_err(|e| anyhow::anyhow!("policy packs in {} are invalid:\n{e}", dir.display()))
}
