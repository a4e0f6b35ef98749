//! `driftwatch-agent`: the command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use driftwatch_agent::config::AgentConfig;
use driftwatch_agent::root::HostRoot;
use driftwatch_agent::snapshot::{self, Snapshotter};

#[derive(Parser)]
#[command(
    name = "driftwatch-agent",
    version,
    about = "Collects configuration facts, audit events and SLA probes on a host and ships them to Kafka."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "DRIFTWATCH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Collect and ship continuously until SIGINT/SIGTERM.
    Run {
        /// Configuration file (YAML); env DRIFTWATCH_AGENT__SECTION__KEY overrides.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Collect one full snapshot and print it.
    Snapshot {
        /// The host's filesystem root.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Configuration file (asset identity, fact settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print this agent's asset id and key fingerprint (making the key
    /// pair if there is none yet), to enrol it on the collector before it
    /// first sends: `driftwatch-collector keys approve ASSET FINGERPRINT`.
    Identity {
        /// Configuration file (state directory, asset identity).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and report every error.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG").unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// One thread runs the agent's async work (sources, shipping): it is light,
/// and every thread costs memory on every host. Fact collection runs on
/// the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    driftwatch_agent::memory::limit_arenas();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match dispatch(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driftwatch-agent: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run { config } => {
            let cfg = AgentConfig::load(config.as_deref())?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            driftwatch_agent::run::run(cfg, rx).await
        }
        Command::Snapshot { root, format, config } => {
            let mut cfg = AgentConfig::load(config.as_deref())?;
            cfg.root = root;
            anyhow::ensure!(cfg.root.is_dir(), "--root {}: not a directory", cfg.root.display());
            let host = HostRoot::new(&cfg.root);
            let asset = snapshot::asset(&cfg.asset, &host);
            let mut s = Snapshotter::new(asset, "snapshot-cli".into(), None);
            let mut snap = driftwatch_schemas::Message::Snapshot(s.full(snapshot::collect(&host, &cfg.facts, None)));
            driftwatch_agent::redact::Redactor::new(&cfg.redact.patterns).map_err(anyhow::Error::msg)?.message(&mut snap);
            let driftwatch_schemas::Message::Snapshot(snap) = snap else { unreachable!("built as a snapshot") };
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&snap).context("encoding the snapshot")?),
                Format::Text => {
                    for f in &snap.facts {
                        println!("{} = {}", f.path, f.value.to_json());
                    }
                }
            }
            Ok(())
        }
        Command::Identity { config } => {
            let cfg = AgentConfig::load(config.as_deref())?;
            std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating state directory {}", cfg.state_dir.display()))?;
            let key = driftwatch_agent::ship::identity::load_or_create(&cfg.state_dir)?;
            let asset = match cfg.mode {
                driftwatch_agent::config::Mode::Host => snapshot::asset(&cfg.asset, &HostRoot::new(&cfg.root)),
                driftwatch_agent::config::Mode::Cluster => driftwatch_agent::cluster::asset(&cfg.asset, &cfg.cluster),
            };
            let fingerprint = key.public().fingerprint();
            println!("asset: {}\nkey: {fingerprint}\nenrol: driftwatch-collector keys approve {} {fingerprint}", asset.id, asset.id);
            Ok(())
        }
        Command::CheckConfig { config } => {
            AgentConfig::load(Some(&config))?;
            println!("{}: OK", config.display());
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
