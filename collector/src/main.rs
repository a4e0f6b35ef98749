//! `driftwatch-collector`: the command line. Each subcommand is a thin
//! edge over the library; errors here carry context for the operator.

use std::io::Read;
use std::path::{Path, PathBuf};

mod cli;

/// mimalloc, not glibc's malloc: the collector allocates and frees many
/// small objects per record on several threads (decoded messages, rows,
/// alerts), and under load glibc's malloc took about a third of its CPU
/// (`_int_malloc`, `malloc_consolidate`; see BENCHMARKS.md).
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

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::{alert, config::CollectorConfig, eval, ingest, policy, score, slo, store, tasks, waiver};
use driftwatch_schemas::ConfigSnapshot;

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
    Run {
        /// Configuration file (YAML); env DRIFTWATCH_COLLECTOR__SECTION__KEY overrides.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Directory of policy packs, over the configuration's `policies` (default: ./policies, else the packs installed beside the binary, else those embedded in it).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Single-node mode: the collector and an agent for this host in one process; no Kafka, no ClickHouse (SQLite in --data-dir).
    Standalone {
        /// Collector configuration (YAML); its kafka and clickhouse sections are unused.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where the database and the agent's state go (unless the configurations set them).
        #[arg(long, default_value = "driftwatch-data", env = "DRIFTWATCH_DATA_DIR")]
        data_dir: PathBuf,
        /// The local agent's configuration (as for driftwatch-agent); its kafka section is unused.
        #[arg(long)]
        agent_config: Option<PathBuf>,
        /// Directory of policy packs, over the configuration's `policies` (default: ./policies, else the packs installed beside the binary, else those embedded in it).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Evaluate one snapshot (JSON, as `driftwatch-agent snapshot --format json` prints) and print per-control results as JSON.
    Evaluate {
        /// Snapshot file; `-` reads standard input.
        #[arg(long)]
        snapshot: PathBuf,
        /// Directory of policy packs (default: ./policies, else the packs installed beside the binary, else those embedded in it).
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
    /// Print the ClickHouse schema: the migrations in order, or with --cluster the replicated + Distributed form for a cluster.
    Schema {
        /// Cluster name (as in the servers' remote_servers).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Create the Driftwatch topics (and the dead-letter topic) if missing.
    Topics {
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
        /// Configuration file: topic names, and the Kafka client settings (kafka.properties: SASL, TLS).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and the policy packs it names; report every error.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Compliance scores per framework, from the stored posture: (passing + 0.5 × partial) / applicable requirements.
    Posture {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this framework (e.g. soc2, pci-dss).
        #[arg(long)]
        framework: Option<String>,
        /// Scope of each score: fleet, asset, or label:KEY (e.g. label:env).
        #[arg(long, default_value = "fleet")]
        by: score::GroupBy,
        /// The posture at a past instant (RFC 3339): the last evaluation of each asset and control at or before it.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Failing and partially met requirements with severity, owner, first seen and due date.
    Gaps {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        framework: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Operating effectiveness over [from, to]: per asset, each control's and requirement's share of time passing, and when it did not.
    Effectiveness {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        framework: Option<String>,
        /// Start, RFC 3339 (e.g. 2026-01-01T00:00:00Z).
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// End, RFC 3339; default now.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// An audit-ready report for one framework over a period: summary and trend, requirements with their checks, operating effectiveness, gaps, waivers.
    Report {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The framework (e.g. soc2, pci-dss, iso27001).
        #[arg(long)]
        framework: String,
        /// Start, RFC 3339.
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// End, RFC 3339; default now.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "html")]
        format: driftwatch_collector::report::render::Format,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Recompute the evidence chains from ClickHouse for a period and report every batch altered, inserted or deleted; exit 1 if any.
    Verify {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Start, RFC 3339.
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// End, RFC 3339; default now.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Drop the monthly partitions every day of which is older than its table's retention (`retention.days`); --dry-run only lists them.
    Retention {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// SLO status: SLI, error budget left, burn rates, SLA breach and credit, per configured objective.
    Slo {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// Silences: mute alerts matching label matchers for a while (Alertmanager's matcher syntax).
    Silence {
        /// Configuration file (for the ClickHouse connection).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Waivers: exempt a failing control or requirement for a scope until an expiry date.
    Waiver {
        /// Configuration file (for the ClickHouse connection and the policy directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::waiver::WaiverCommand,
    },
    /// Agents' keys per asset: list them, approve a new one (enrolment, a reinstalled agent), revoke one.
    Keys {
        /// Configuration file (for the store's connection).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: cli::keys::KeysCommand,
    },
    /// Work with policy packs.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Create a silence; prints its id.
    Add {
        /// A label matcher, e.g. asset=web-1, severity=~"low|medium" (repeatable; all must match).
        #[arg(long = "matcher", short = 'm', required = true)]
        matchers: Vec<String>,
        /// How long from now (e.g. 2h), unless --ends is given.
        #[arg(long, default_value = "2h")]
        duration: String,
        /// Start, RFC 3339; default now.
        #[arg(long)]
        starts: Option<chrono::DateTime<chrono::Utc>>,
        /// End, RFC 3339.
        #[arg(long)]
        ends: Option<chrono::DateTime<chrono::Utc>>,
        /// Who is silencing.
        #[arg(long)]
        author: String,
        /// Why (a ticket, a change).
        #[arg(long)]
        comment: String,
    },
    /// List silences not yet ended.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: OutputFormat,
    },
    /// End a silence now.
    Expire { id: String },
}

#[derive(Subcommand)]
enum PoliciesCommand {
    /// Validate packs: report every error with file:line; exit 1 if any.
    Check {
        /// Directory of policy packs.
        dir: PathBuf,
    },
    /// Run every control's fixture cases (`fixtures/*.yaml` beside the packs); exit 1 on any failure.
    Test {
        /// Directory of policy packs.
        dir: PathBuf,
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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    no_transparent_huge_pages();
    match dispatch(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftwatch-collector: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        Command::Standalone { config, data_dir, agent_config, policies } => {
            cli::serve::standalone(cli::serve::Standalone { config, data_dir, agent_config, policies }).await?
        }
        Command::Run { config, policies } => {
            let cfg = CollectorConfig::load_with_policies(config.as_deref(), policies.as_deref())?;
            cli::serve::run(cfg, cli::serve::Transport::Kafka).await?
        }
        Command::Evaluate { snapshot, policies } => evaluate(&snapshot, &policies)?,
        Command::Schema { cluster } => match cluster {
            Some(c) => print!("{}", driftwatch_schemas::clickhouse::cluster_ddl(&c).map_err(|e| anyhow::anyhow!(e))?),
            None => {
                for m in driftwatch_schemas::clickhouse::MIGRATIONS {
                    println!("-- {}", m.name);
                    for s in m.statements() {
                        println!("{s};");
                    }
                }
            }
        },
        Command::Topics { brokers, partitions, replication, config } => {
            let cfg = CollectorConfig::load(config.as_deref())?;
            let t = &cfg.kafka.topics;
            let names = [t.snapshots.as_str(), t.audit.as_str(), t.sla.as_str(), t.dead_letter.as_str()];
            let created = ingest::topics::ensure(&brokers, &cfg.kafka.properties, &names, partitions, replication).await?;
            eprintln!(
                "topics ready on {brokers}: {} (created now: {})",
                names.join(", "),
                if created.is_empty() { "none".into() } else { created.join(", ") }
            );
        }
        Command::CheckConfig { config } => {
            let cfg = CollectorConfig::load(Some(&config))?;
            let set = load_policies(&cfg.policies)?;
            let waivers = check_waivers(&cfg.policies, &set)?;
            println!("{}: OK ({} controls, {waivers} declared waivers in {})", config.display(), set.controls.len(), cfg.policies_source());
        }
        Command::Posture { config, framework, by, at, format } => {
            let (cfg, set, store) = open_store(config.as_deref()).await?;
            let waivers = load_waivers(&cfg.policies, &store).await?;
            let results = match at {
                Some(at) => store.results_at(at).await.with_context(|| format!("reading the posture at {at}"))?,
                None => store.current_results().await.context("reading the current posture")?,
            };
            let w = score::WaiversAt { waivers: &waivers, at: at.unwrap_or_else(chrono::Utc::now) };
            let scores = score::scores(&set, &results, framework.as_deref(), &by, w);
            print_out(format, &scores, || {
                let mut t = String::from(
                    "FRAMEWORK     GROUP                         SCORE  W/O WAIVERS  PASS  WAIVED  PARTIAL  FAIL  APPLICABLE\n",
                );
                for s in &scores {
                    t += &format!(
                        "{:<13} {:<28} {:>6.1}  {:>11.1}  {:>4}  {:>6}  {:>7}  {:>4}  {:>10}\n",
                        s.framework, s.group, s.score, s.score_without_waivers, s.passing, s.waived, s.partial, s.failing, s.applicable
                    );
                }
                t
            })?;
        }
        Command::Gaps { config, framework, format } => {
            let (cfg, set, store) = open_store(config.as_deref()).await?;
            let waivers = load_waivers(&cfg.policies, &store).await?;
            let results = store.current_results().await.context("reading the current posture")?;
            let now = chrono::Utc::now();
            let gaps = score::gaps(&set, &results, framework.as_deref(), score::WaiversAt { waivers: &waivers, at: now }, now);
            print_out(format, &gaps, || {
                let mut t =
                    String::from("DUE         SEVERITY  FRAMEWORK     REQUIREMENT             STATUS   ASSETS  OWNERS / CONTROLS\n");
                for g in &gaps {
                    t += &format!(
                        "{}{} {:<9} {:<13} {:<23} {:<8} {:>6}  {} / {}\n",
                        g.due.format("%Y-%m-%d"),
                        if g.overdue { "!" } else { " " },
                        g.severity.as_str(),
                        g.framework,
                        g.requirement,
                        format!("{:?}", g.status).to_lowercase(),
                        g.failing_assets,
                        if g.owners.is_empty() { "-".to_string() } else { g.owners.join(",") },
                        g.failing_controls.join(",")
                    );
                }
                t
            })?;
        }
        Command::Effectiveness { config, framework, from, to, asset, format } => {
            let to = to.unwrap_or_else(chrono::Utc::now);
            anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
            let (_, set, store) = open_store(config.as_deref()).await?;
            let mut histories = store.histories(from, to).await.context("reading the evaluation history")?;
            if let Some(a) = &asset {
                histories.retain(|h| &h.asset_id == a);
            }
            let eff = score::effectiveness::compute(&set, &histories, framework.as_deref(), from, to);
            print_out(format, &eff, || {
                let mut t = String::from("ASSET                     SUBJECT                                     PASSING  NOT PASSING\n");
                for e in &eff {
                    let share = e.pass_share.map(|s| format!("{:6.2}%", s * 100.0)).unwrap_or_else(|| "    n/a".into());
                    let gaps: Vec<String> = e
                        .not_passing
                        .iter()
                        .map(|i| format!("{} {}→{}", i.status.as_str(), i.from.to_rfc3339(), i.to.to_rfc3339()))
                        .collect();
                    t += &format!("{:<25} {:<43} {}  {}\n", e.asset_id, e.subject, share, gaps.join("; "));
                }
                t
            })?;
        }
        Command::Silence { config, command } => silence(config.as_deref(), command).await?,
        Command::Retention { config, dry_run, format } => {
            let cfg = CollectorConfig::load(config.as_deref())?;
            let store = connect(&cfg).await?;
            let expired = store.retention_plan(&cfg.retention, chrono::Utc::now()).await.context("reading partitions")?;
            if !dry_run {
                store.drop_partitions(&expired).await.context("dropping partitions")?;
            }
            print_out(format, &expired, || {
                let verb = if dry_run { "would drop" } else { "dropped" };
                let mut t = format!("{} partition(s) {verb}\n", expired.len());
                for e in &expired {
                    t += &format!("  {} {} ({} rows; kept {} days)\n", e.table, e.partition, e.rows, e.retention_days);
                }
                t
            })?;
        }
        Command::Verify { config, from, to, format } => {
            let to = to.unwrap_or_else(chrono::Utc::now);
            anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
            let cfg = CollectorConfig::load(config.as_deref())?;
            let store = connect(&cfg).await?;
            let v = verify_evidence(&store, from, to).await.context("reading the evidence")?;
            print_out(format, &v, || {
                let mut t = format!("{} chains, {} links, {} rows, {} hourly roots checked: ", v.chains, v.links, v.rows, v.roots);
                if v.intact() {
                    t += "intact\n";
                } else {
                    t += &format!("{} problem(s)\n", v.findings.len());
                    for f in &v.findings {
                        t += &format!("  {f}\n");
                    }
                }
                t
            })?;
            if !v.intact() {
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Report { config, framework, from, to, format, output } => {
            use driftwatch_collector::report;
            let to = to.unwrap_or_else(chrono::Utc::now);
            anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
            anyhow::ensure!(
                policy::frameworks::framework(&framework).is_some(),
                "--framework {framework:?}: unknown (known: {})",
                policy::frameworks::FRAMEWORKS.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
            );
            let (cfg, set, store) = open_store(config.as_deref()).await?;
            let waivers = load_waivers(&cfg.policies, &store).await?;
            let inputs = report::gather(&store, &set, &waivers, &framework, from, to).await.context("reading the period's results")?;
            let bytes = report::render::render(&report::build(&inputs, chrono::Utc::now()), format);
            match output {
                Some(path) => std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes).context("writing the report")?,
            }
        }
        Command::Waiver { config, command } => {
            let (cfg, _, store) = open_store(config.as_deref()).await?;
            cli::waiver::run(&store, &load_waivers(&cfg.policies, &store).await?, command).await?;
        }
        Command::Keys { config, command } => {
            let (_, _, store) = open_store(config.as_deref()).await?;
            cli::keys::run(&store, command).await?;
        }
        Command::Slo { config, format } => {
            let cfg = CollectorConfig::load(config.as_deref())?;
            let store = connect(&cfg).await?;
            let now = chrono::Utc::now();
            store
                .refresh_sla_rollups(now - chrono::Duration::minutes(15), now + chrono::Duration::minutes(1))
                .await
                .context("refreshing rollups")?;
            let statuses: Vec<slo::Status> =
                tasks::slo::statuses(&cfg.slo, &store, now).await.context("computing SLOs")?.into_iter().map(|(_, s)| s).collect();
            let pct = |v: Option<f64>| v.map(|v| format!("{v:.3}%")).unwrap_or_else(|| "no data".into());
            print_out(format, &statuses, || {
                let mut t = String::from("SERVICE          SLI        OBJECTIVE  WINDOW  BUDGET LEFT  BURNING                SLA\n");
                for s in &statuses {
                    let burning: Vec<String> = s.burning.iter().map(|(w, a)| format!("{w} {a}")).collect();
                    let sla = if s.sla_breached {
                        format!("BREACHED, credit {}", s.credit_due.map(|c| format!("{c}%")).unwrap_or_else(|| "none".into()))
                    } else {
                        "ok".into()
                    };
                    t += &format!(
                        "{:<16} {:<10} {:>8}%  {:<7} {:>11}  {:<22} {}\n",
                        s.service,
                        pct(s.sli),
                        s.objective,
                        s.window,
                        s.budget_remaining.map(|b| format!("{:.1}%", b * 100.0)).unwrap_or_else(|| "-".into()),
                        if burning.is_empty() { "-".into() } else { burning.join(", ") },
                        sla
                    );
                }
                t
            })?;
        }
        Command::Policies { command: PoliciesCommand::Test { dir } } => {
            let set = load_policies(&dir)?;
            let report = eval::testing::run(&dir, &set);
            for f in &report.failures {
                eprintln!("{f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            if !report.failures.is_empty() {
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Policies { command: PoliciesCommand::Check { dir } } => {
            let mut errors = Vec::new();
            let set = policy::load_dir(&dir).map_err(|e| errors.extend(e.0)).ok();
            let waivers = waiver::load_dir(&dir).map_err(|e| errors.extend(e.0)).ok();
            if !errors.is_empty() {
                eprintln!("{}", policy::PolicyErrors(errors.clone()));
                eprintln!("{} error(s)", errors.len());
                return Ok(std::process::ExitCode::from(1));
            }
            let (set, waivers) = (set.unwrap_or_default(), waivers.unwrap_or_default());
            for f in waiver::flags(&waivers, &set) {
                eprintln!("warning: {f}");
            }
            println!("{}: {} controls, {} waivers OK", dir.display(), set.controls.len(), waivers.len());
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn silence(config: Option<&Path>, command: SilenceCommand) -> anyhow::Result<()> {
    use alert::matcher::Matcher;
    use alert::mute::Silence;
    let cfg = CollectorConfig::load(config)?;
    let store = connect(&cfg).await?;
    match command {
        SilenceCommand::Add { matchers, duration, starts, ends, author, comment } => {
            let matchers =
                matchers.iter().map(|m| Matcher::parse(m)).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("--matcher: {e}"))?;
            let starts_at = starts.unwrap_or_else(chrono::Utc::now);
            let ends_at = match ends {
                Some(e) => e,
                None => {
                    let d = humantime::parse_duration(&duration).with_context(|| format!("--duration {duration:?}"))?;
                    starts_at + chrono::Duration::from_std(d).context("--duration is too long")?
                }
            };
            anyhow::ensure!(ends_at > starts_at, "the silence ends ({ends_at}) before it starts ({starts_at})");
            anyhow::ensure!(!author.trim().is_empty() && !comment.trim().is_empty(), "--author and --comment must not be empty");
            let s = Silence { id: uuid::Uuid::now_v7().to_string(), matchers, starts_at, ends_at, created_by: author, comment };
            store.put_silence(&s.row(chrono::Utc::now())).await.context("storing the silence")?;
            println!("{}", s.id);
        }
        SilenceCommand::List { format } => {
            let list = Silence::from_rows(store.silences().await.context("reading silences")?);
            print_out(format, &list, || {
                let mut t = String::from("ID                                    ENDS                  BY        MATCHERS / COMMENT\n");
                for s in &list {
                    let m: Vec<String> = s.matchers.iter().map(|m| m.to_string()).collect();
                    t += &format!(
                        "{:<37} {:<21} {:<9} {} / {}\n",
                        s.id,
                        s.ends_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        s.created_by,
                        m.join(","),
                        s.comment
                    );
                }
                t
            })?;
        }
        SilenceCommand::Expire { id } => {
            let list = Silence::from_rows(store.silences().await.context("reading silences")?);
            let mut s = list.into_iter().find(|s| s.id == id).with_context(|| format!("no active silence {id}"))?;
            s.ends_at = chrono::Utc::now();
            store.put_silence(&s.row(chrono::Utc::now())).await.context("storing the silence")?;
            println!("expired {id}");
        }
    }
    Ok(())
}

/// Opens the configured store (ClickHouse, migrated unless off; or SQLite).
pub(crate) async fn connect(cfg: &CollectorConfig) -> anyhow::Result<SharedStore> {
    store::open(&cfg.store, &cfg.clickhouse).await.with_context(|| match cfg.store.kind {
        driftwatch_collector::config::StoreKind::Clickhouse => {
            format!("connecting to ClickHouse at {} (database {})", cfg.clickhouse.url, cfg.clickhouse.database)
        }
        driftwatch_collector::config::StoreKind::Sqlite => format!("opening the SQLite database {}", cfg.store.sqlite_path.display()),
    })
}

/// The configuration, its policies and a connection to its store.
async fn open_store(config: Option<&Path>) -> anyhow::Result<(CollectorConfig, policy::PolicySet, SharedStore)> {
    let cfg = CollectorConfig::load(config)?;
    let set = load_policies(&cfg.policies)?;
    let store = connect(&cfg).await?;
    Ok((cfg, set, store))
}

/// Prints `value` as JSON, or the text `table` renders.
pub(crate) fn print_out<T: serde::Serialize>(format: OutputFormat, value: &T, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        OutputFormat::Text => print!("{}", table()),
    }
    Ok(())
}

/// Reads a period's links, rows and roots and verifies them.
async fn verify_evidence(
    store: &SharedStore,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<driftwatch_collector::evidence::verify::Verification> {
    let links = store.evidence_links(from, to).await?;
    let batches: std::collections::BTreeSet<String> = links.iter().map(|l| l.batch_id.clone()).collect();
    let rows = store.evidence_rows(&batches, from, to).await?;
    // Rows of the period whose batches were chained just outside it.
    let unknown: std::collections::BTreeSet<String> =
        rows.iter().filter(|r| !batches.contains(&r.batch_id)).map(|r| r.batch_id.clone()).collect();
    let outside = store.evidence_links_for(&unknown.into_iter().collect::<Vec<_>>()).await?;
    let roots = store.evidence_roots(from, to).await?;
    Ok(driftwatch_collector::evidence::verify::verify(&links, &outside, &rows, &roots))
}

/// The waivers: those declared beside the packs, and those stored.
pub(crate) async fn load_waivers(dir: &Path, store: &SharedStore) -> anyhow::Result<waiver::Waivers> {
    let declared = waiver::load_dir(dir).map_err(|e| anyhow::anyhow!("waiver files in {} are invalid:\n{e}", dir.display()))?;
    let stored = waiver::Waiver::from_rows(store.waivers().await.context("reading stored waivers")?);
    Ok(waiver::Waivers::new(waiver::sync::merge(&declared, &stored)))
}

/// Validates the declared waivers (an error fails, a flag warns); returns
/// how many there are.
fn check_waivers(dir: &Path, set: &policy::PolicySet) -> anyhow::Result<usize> {
    let declared = waiver::load_dir(dir).map_err(|e| anyhow::anyhow!("waiver files in {} are invalid:\n{e}", dir.display()))?;
    for f in waiver::flags(&declared, set) {
        eprintln!("warning: {f}");
    }
    Ok(declared.len())
}

pub(crate) fn load_policies(dir: &Path) -> anyhow::Result<policy::PolicySet> {
    policy::load_dir(dir).map_err(|e| anyhow::anyhow!("policy packs in {} are invalid:\n{e}", dir.display()))
}

fn evaluate(snapshot: &Path, policies: &Path) -> anyhow::Result<()> {
    let text = if snapshot == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the snapshot from standard input")?;
        s
    } else {
        std::fs::read_to_string(snapshot).with_context(|| format!("reading {}", snapshot.display()))?
    };
    let snap: ConfigSnapshot = serde_json::from_str(&text).with_context(|| format!("{}: not a snapshot", snapshot.display()))?;
    // Held to the same limits as a record from Kafka (a path's depth bounds
    // the evaluation's recursion).
    driftwatch_schemas::limits::Limits::default().check_snapshot(&snap).with_context(|| format!("{}: over a limit", snapshot.display()))?;
    let (policies, _) = policy::bundled::locate(policies).context("unpacking the policy packs embedded in the binary")?;
    let set = load_policies(&policies)?;
    let facts = snap.facts.iter().map(|f| (f.path.clone(), f.value.clone())).collect();
    let results = eval::evaluate_all(&set, &snap.asset, &facts, &snap.snapshot_id, snap.sequence, snap.collected_at);
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}
