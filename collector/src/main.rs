//! `driftwatch-collector`: the command table. Each command is a thin edge
//! over the library, written in `cli/` (one file per group); errors there
//! carry context for the operator.

use std::path::PathBuf;

mod cli;

/// mimalloc, not glibc's malloc: the collector allocates and frees many
/// small objects per record on several threads (decoded messages, rows,
/// alerts), and under load glibc's malloc took about a third of its CPU
/// (`_int_malloc`, `malloc_consolidate`; see BENCHMARKS.md). The feature
/// `system-allocator` builds with the system's, for heap profilers such as
/// heaptrack, which follow malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process. mimalloc asks for them
/// (`MADV_HUGEPAGE`) on its arenas, and the first touch of each 2 MiB
/// there had the kernel zero the whole huge page: 15 % of the collector's
/// CPU through a storm of first snapshots, 2 MiB at a time whether or not
/// it was all used (BENCHMARKS.md). Best effort: an error leaves them on.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integers and reads no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
    }
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "driftwatch-collector",
    version,
    about = "Consumes Driftwatch agent streams, evaluates compliance controls, stores to ClickHouse and raises alerts."
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

#[derive(Subcommand)]
enum Command {
    /// Consume the three topics, evaluate, store and alert until stopped (SIGINT/SIGTERM).
    Run(cli::serve::RunArgs),
    /// Single-node mode: the collector and an agent for this host in one process; no Kafka, no ClickHouse (SQLite in --data-dir).
    Standalone(cli::serve::StandaloneArgs),
    /// Evaluate one snapshot (JSON, as `driftwatch-agent snapshot --format json` prints) and print per-control results as JSON.
    Evaluate(cli::policies::EvaluateArgs),
    /// Print the ClickHouse schema: the migrations in order, or with --cluster the replicated + Distributed form for a cluster.
    Schema(cli::setup::SchemaArgs),
    /// Create the Driftwatch topics (and the dead-letter topic) if missing.
    Topics(cli::setup::TopicsArgs),
    /// Validate a configuration file and the policy packs it names; report every error.
    CheckConfig(cli::setup::CheckConfigArgs),
    /// Compliance scores per framework, from the stored posture: (passing + 0.5 × partial) / applicable requirements.
    Posture(cli::reads::PostureArgs),
    /// Failing and partially met requirements with severity, owner, first seen and due date.
    Gaps(cli::reads::GapsArgs),
    /// Operating effectiveness over [from, to]: per asset, each control's and requirement's share of time passing, and when it did not.
    Effectiveness(cli::reads::EffectivenessArgs),
    /// An audit-ready report for one framework over a period: summary and trend, requirements with their checks, operating effectiveness, gaps, waivers.
    Report(cli::reads::ReportArgs),
    /// Recompute the evidence chains from ClickHouse for a period and report every batch altered, inserted or deleted; exit 1 if any.
    Verify(cli::evidence::VerifyArgs),
    /// Drop the monthly partitions every day of which is older than its table's retention (`retention.days`); --dry-run only lists them.
    Retention(cli::evidence::RetentionArgs),
    /// SLO status: SLI, error budget left, burn rates, SLA breach and credit, per configured objective.
    Slo(cli::reads::SloArgs),
    /// Silences: mute alerts matching label matchers for a while (Alertmanager's matcher syntax).
    Silence {
        /// Configuration file (for the ClickHouse connection).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::silence::SilenceCommand,
    },
    /// Waivers: exempt a failing control or requirement for a scope until an expiry date.
    Waiver {
        /// Configuration file (for the ClickHouse connection and the policy directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::waiver::WaiverCommand,
    },
    /// Track a gap to closure: assign it, move it on, accept its risk (a waiver), see its history.
    Gap {
        /// Configuration file (for the store and the policy directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::gap::GapCommand,
    },
    /// Attestations: people attest what no agent can observe (access reviews, training, restore tests), with evidence files.
    Attestation {
        /// Configuration file (for the store, the policy directory and the evidence limits).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::attest::AttestationCommand,
    },
    /// Agents' keys per asset: list them, approve a new one (enrolment, a reinstalled agent), revoke one.
    Keys {
        /// Configuration file (for the store's connection).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::keys::KeysCommand,
    },
    /// The dead-letter topic: list what it holds and why, replay it into the pipeline after an upgrade or a fix.
    DeadLetters {
        /// Configuration file (for the Kafka connection and topic names).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::dead_letters::DeadLettersCommand,
    },
    /// Work with policy packs.
    Policies {
        #[command(subcommand)]
        command: cli::policies::PoliciesCommand,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    no_transparent_huge_pages();
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftwatch-collector: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(args) => cli::serve::run_command(args).await?,
        Command::Standalone(args) => cli::serve::standalone(args).await?,
        Command::Evaluate(args) => return cli::policies::evaluate(args),
        Command::Schema(args) => cli::setup::schema(args)?,
        Command::Topics(args) => cli::setup::topics(args).await?,
        Command::CheckConfig(args) => cli::setup::check_config(args)?,
        Command::Posture(args) => cli::reads::posture(args).await?,
        Command::Gaps(args) => cli::reads::gaps(args).await?,
        Command::Effectiveness(args) => cli::reads::effectiveness(args).await?,
        Command::Report(args) => cli::reads::report(args).await?,
        Command::Slo(args) => cli::reads::slo(args).await?,
        Command::Verify(args) => return cli::evidence::verify(args).await,
        Command::Retention(args) => cli::evidence::retention(args).await?,
        Command::Silence { config, command } => cli::silence::run(config.as_deref(), command).await?,
        Command::Waiver { config, command } => {
            let (cfg, _, store) = cli::open_store(config.as_deref()).await?;
            cli::waiver::run(&store, &cli::load_waivers(&cfg.policies, &store).await?, command).await?
        }
        Command::Gap { config, command } => {
            let (cfg, set, store) = cli::open_store(config.as_deref()).await?;
            cli::gap::run(&store, &set, &cli::load_waivers(&cfg.policies, &store).await?, command).await?
        }
        Command::Attestation { config, command } => {
            let (cfg, set, store) = cli::open_store(config.as_deref()).await?;
            cli::attest::run(&store, &set, cfg.attestations, command).await?
        }
        Command::DeadLetters { config, command } => cli::dead_letters::run(config, command).await?,
        Command::Keys { config, command } => {
            let (_, _, store) = cli::open_store(config.as_deref()).await?;
            cli::keys::run(&store, command).await?
        }
        Command::Policies { command } => return cli::policies::run(command),
    }
    Ok(ExitCode::SUCCESS)
}
