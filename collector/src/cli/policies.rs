//! Policy packs: `evaluate` (one snapshot against the packs, offline),
//! `policies check` (every error with file:line) and `policies test` (every
//! control's fixture cases).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use driftwatch_collector::{eval, policy, waiver};
use driftwatch_schemas::ConfigSnapshot;

use super::load_policies;

/// The arguments of `driftwatch-collector evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// Snapshot file; `-` reads standard input.
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Directory of policy packs (default: ./policies, else the packs installed beside the binary, else those embedded in it).
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// `json` (every result), `junit` (JUnit XML for CI pipelines: a failure per failing control, with its evidence and fix), or `policyreport` (a cluster's findings as wgpolicyk8s.io PolicyReports, a v1 List for kubectl apply).
    #[arg(long, value_enum, default_value = "json")]
    pub format: EvaluateFormat,
    /// Exit 1 when a control of at least this severity fails or errs (low, medium, high, critical): a pipeline's gate.
    #[arg(long)]
    pub fail_on: Option<policy::Severity>,
}

/// How `evaluate` prints its results.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum EvaluateFormat {
    Json,
    Junit,
    Policyreport,
}

#[derive(Subcommand)]
pub enum PoliciesCommand {
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
    /// Print a pack skeleton from XCCDF rules (an SSG data stream such as ssg-debian11-ds.xml, or an XCCDF benchmark): ids, titles, descriptions, rationales, severities, SSG references and the 800-53 / 800-171 / HIPAA requirements they cite; the checks are yours to write.
    ImportXccdf {
        /// The SCAP data stream or XCCDF file.
        file: PathBuf,
        /// Only the rules this profile selects (e.g. `standard`, `anssi_np_nt28_high`); without it, every rule.
        #[arg(long)]
        profile: Option<String>,
        /// The pack's name, and the prefix of its control ids.
        #[arg(long, default_value = "imported")]
        pack: String,
        /// Directory of policy packs whose catalogs the references map to (default: the shipped catalogs).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
}

/// `driftwatch-collector policies check|test`.
pub fn run(command: PoliciesCommand) -> anyhow::Result<ExitCode> {
    match command {
        PoliciesCommand::Test { dir } => {
            let set = load_policies(&dir)?;
            let report = eval::testing::run(&dir, &set);
            for f in &report.failures {
                eprintln!("{f}");
            }
            println!("{} passed, {} failed", report.passed, report.failures.len());
            if !report.failures.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        PoliciesCommand::ImportXccdf { file, profile, pack, policies } => {
            let xml = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let benchmark = policy::xccdf::parse(&xml).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let rules: Vec<policy::xccdf::Rule> = match &profile {
                None => benchmark.rules,
                Some(p) => {
                    let selected = benchmark.profiles.get(p).with_context(|| {
                        format!(
                            "{}: no profile {p:?} (it has: {})",
                            file.display(),
                            benchmark.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    })?;
                    benchmark.rules.into_iter().filter(|r| selected.contains(&r.id)).collect()
                }
            };
            let catalogs = match &policies {
                Some(dir) => policy::catalog::Catalogs::load(dir).map_err(|e| anyhow::anyhow!("{}", policy::PolicyErrors(e)))?,
                None => policy::catalog::Catalogs::shipped(),
            };
            let source = match &profile {
                Some(p) => format!("{} (profile {p})", file.display()),
                None => file.display().to_string(),
            };
            print!("{}", policy::xccdf::skeleton(&pack, &source, &rules, &catalogs));
            eprintln!("{} rules from {}", rules.len(), if benchmark.title.is_empty() { source } else { benchmark.title });
        }
        PoliciesCommand::Check { dir } => {
            let mut errors = Vec::new();
            let set = policy::load_dir(&dir).map_err(|e| errors.extend(e.0)).ok();
            let waivers = waiver::load_dir(&dir).map_err(|e| errors.extend(e.0)).ok();
            if !errors.is_empty() {
                eprintln!("{}", policy::PolicyErrors(errors.clone()));
                eprintln!("{} error(s)", errors.len());
                return Ok(ExitCode::from(1));
            }
            let (set, waivers) = (set.unwrap_or_default(), waivers.unwrap_or_default());
            for f in waiver::flags(&waivers, &set) {
                eprintln!("warning: {f}");
            }
            println!("{}: {} controls, {} waivers OK", dir.display(), set.controls.len(), waivers.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `driftwatch-collector evaluate`.
pub fn evaluate(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let EvaluateArgs { snapshot, policies, format, fail_on } = args;
    let (snapshot, policies) = (snapshot.as_path(), policies.as_path());
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
    match format {
        EvaluateFormat::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        EvaluateFormat::Junit => {
            print!("{}", driftwatch_collector::report::junit::render(&results, &set, &snap.asset.id, snap.collected_at))
        }
        EvaluateFormat::Policyreport => {
            println!(
                "{}",
                serde_json::to_string_pretty(&driftwatch_collector::report::policyreport::render(&results, &set, &snap.asset.id))?
            )
        }
    }
    let failing = |e: &&eval::Evaluation| matches!(e.status, eval::Status::Fail | eval::Status::Error);
    match fail_on {
        Some(min) if results.iter().filter(failing).any(|e| e.severity >= min) => {
            eprintln!(
                "{} control(s) of severity {} or above fail",
                results.iter().filter(failing).filter(|e| e.severity >= min).count(),
                min.as_str()
            );
            Ok(ExitCode::from(1))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
