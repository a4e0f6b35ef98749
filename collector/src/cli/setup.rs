//! Setting up: `schema` (the ClickHouse DDL, or its cluster form),
//! `topics` (create the topics), `check-config` (validate a configuration
//! and the packs it names).

use std::path::PathBuf;

use clap::Args;
use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::ingest;

use super::{check_waivers, load_policies};

/// The arguments of `driftwatch-collector schema`.
#[derive(Args)]
pub struct SchemaArgs {
    /// Cluster name (as in the servers' remote_servers).
    #[arg(long)]
    pub cluster: Option<String>,
    /// With --cluster: the database the statements name (each is run on
    /// every node, so each names its database).
    #[arg(long, default_value = "driftwatch", requires = "cluster")]
    pub database: String,
}

/// Print the ClickHouse schema: the migrations in order, or with --cluster the replicated + Distributed form for a cluster.
pub fn schema(args: SchemaArgs) -> anyhow::Result<()> {
    let SchemaArgs { cluster, database } = args;
    match cluster {
        Some(c) => print!("{}", driftwatch_schemas::clickhouse::cluster_ddl(&c, &database).map_err(|e| anyhow::anyhow!(e))?),
        None => {
            for m in driftwatch_schemas::clickhouse::MIGRATIONS {
                println!("-- {}", m.name);
                for s in m.statements() {
                    println!("{s};");
                }
            }
        }
    }
    Ok(())
}

/// The arguments of `driftwatch-collector topics`.
#[derive(Args)]
pub struct TopicsArgs {
    #[arg(long, default_value = driftwatch_schemas::DEFAULT_BROKERS)]
    pub brokers: String,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of topics created now; by default 3, or as many
    /// as the cluster has brokers when it has fewer (1 on a single broker).
    #[arg(long)]
    pub replication: Option<i32>,
    /// Configuration file: topic names, and the Kafka client settings (kafka.properties: SASL, TLS).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// Create the Driftwatch topics (and the dead-letter topic) if missing.
pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let TopicsArgs { brokers, partitions, replication, config } = args;
    let cfg = CollectorConfig::load(config.as_deref())?;
    let t = &cfg.kafka.topics;
    let names = [t.snapshots.as_str(), t.audit.as_str(), t.sla.as_str(), t.dead_letter.as_str()];
    let ready = ingest::topics::ensure(&brokers, &cfg.kafka.properties, &names, partitions, replication).await?;
    eprintln!(
        "topics ready on {brokers}: {} (created now: {}; replication factor {}{})",
        names.join(", "),
        if ready.created.is_empty() { "none".into() } else { ready.created.join(", ") },
        ready.replication,
        if replication.is_none() { format!(", chosen for {} broker(s)", ready.brokers) } else { String::new() }
    );
    Ok(())
}

/// The arguments of `driftwatch-collector check-config`.
#[derive(Args)]
pub struct CheckConfigArgs {
    #[arg(long, short)]
    pub config: PathBuf,
}

/// Validate a configuration file and the policy packs it names; report every error.
pub fn check_config(args: CheckConfigArgs) -> anyhow::Result<()> {
    let CheckConfigArgs { config } = args;
    let cfg = CollectorConfig::load(Some(&config))?;
    let set = load_policies(&cfg.policies)?;
    let waivers = check_waivers(&cfg.policies, &set)?;
    println!("{}: OK ({} controls, {waivers} declared waivers in {})", config.display(), set.controls.len(), cfg.policies_source());
    Ok(())
}
