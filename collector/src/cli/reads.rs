//! Reads over the stored results: `posture` (scores), `gaps`,
//! `effectiveness`, `report` (an audit-ready report) and `slo`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::{policy, score, slo, tasks};

use super::{connect, load_waivers, open_store, print_out, OutputFormat};

/// The arguments of `driftwatch-collector posture`.
#[derive(Args)]
pub struct PostureArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Only this framework (e.g. soc2, pci-dss).
    #[arg(long)]
    pub framework: Option<String>,
    /// Scope of each score: fleet, asset, section (SOC 2 category, CSF function, … of the framework's catalog), or label:KEY (e.g. label:env).
    #[arg(long, default_value = "fleet")]
    pub by: score::GroupBy,
    /// The posture at a past instant (RFC 3339): the last evaluation of each asset and control at or before it.
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Compliance scores per framework, from the stored posture: (passing + 0.5 × partial) / applicable requirements, with the coverage of the framework's catalog.
pub async fn posture(args: PostureArgs) -> anyhow::Result<()> {
    let PostureArgs { config, framework, by, at, format } = args;
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
            "FRAMEWORK     GROUP                         COVERAGE  ATTESTED  NOT ASSESSED  SCORE  W/O WAIVERS  PASS  WAIVED  PARTIAL  FAIL  APPLICABLE\n",
        );
        for s in &scores {
            let (coverage, attested, not_assessed) = match (s.coverage, s.attested, s.not_assessed, s.catalog_requirements) {
                (Some(c), Some(a), Some(n), Some(total)) => (format!("{c:.1}%"), a.to_string(), format!("{n} of {total}")),
                _ => ("no catalog".to_string(), "-".to_string(), "-".to_string()),
            };
            t += &format!(
                "{:<13} {:<28} {:>9}  {:>8}  {:>12}  {:>5.1}  {:>11.1}  {:>4}  {:>6}  {:>7}  {:>4}  {:>10}\n",
                s.framework,
                s.group,
                coverage,
                attested,
                not_assessed,
                s.score,
                s.score_without_waivers,
                s.passing,
                s.waived,
                s.partial,
                s.failing,
                s.applicable
            );
        }
        if scores.iter().any(|s| s.coverage.is_some_and(|c| c < 100.0)) {
            t += "A score is over the requirements assessed; below 100% coverage the rest have no evidence either way.\n";
        }
        t
    })?;
    Ok(())
}

/// The arguments of `driftwatch-collector gaps`.
#[derive(Args)]
pub struct GapsArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub framework: Option<String>,
    /// Only the gaps of this asset's results.
    #[arg(long)]
    pub asset: Option<String>,
    /// Only the gaps of this owner's assets (their `owner` label, else `team`).
    #[arg(long)]
    pub owner: Option<String>,
    /// Only gaps of this severity or above (low, medium, high, critical).
    #[arg(long)]
    pub severity: Option<policy::Severity>,
    /// Only gaps in this tracking state (open, in_progress, risk_accepted, resolved).
    #[arg(long)]
    pub state: Option<score::tracking::GapState>,
    /// Only gaps assigned to this person.
    #[arg(long)]
    pub assignee: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Failing and partially met requirements with severity, owner, first seen, due date and what to do.
pub async fn gaps(args: GapsArgs) -> anyhow::Result<()> {
    let GapsArgs { config, framework, asset, owner, severity, state, assignee, format } = args;
    let (cfg, set, store) = open_store(config.as_deref()).await?;
    let waivers = load_waivers(&cfg.policies, &store).await?;
    let results = store.current_results().await.context("reading the current posture")?;
    let tracked = score::tracking::latest(&store.gap_events().await.context("reading gap tracking")?);
    let now = chrono::Utc::now();
    let filter =
        score::GapFilter { asset: asset.as_deref(), owner: owner.as_deref(), min_severity: severity, state, assignee: assignee.as_deref() };
    let gaps = filter.gaps(&set, &results, framework.as_deref(), score::WaiversAt { waivers: &waivers, at: now }, now, &tracked);
    print_out(format, &gaps, || {
        let mut t = String::from(
            "DUE         SEVERITY  GAP                                STATUS   STATE        ASSIGNEE      ASSETS  OWNERS / CONTROLS\n",
        );
        for g in &gaps {
            t += &format!(
                "{}{} {:<9} {:<34} {:<8} {:<12} {:<13} {:>6}  {} / {}\n",
                g.due.format("%Y-%m-%d"),
                if g.overdue { "!" } else { " " },
                g.severity.as_str(),
                g.id,
                format!("{:?}", g.status).to_lowercase(),
                if g.reopened { "reopened".to_string() } else { g.state.as_str().to_string() },
                g.assignee.as_deref().unwrap_or("-"),
                g.failing_assets,
                if g.owners.is_empty() { "-".to_string() } else { g.owners.join(",") },
                g.failing_controls.join(",")
            );
            for f in &g.fixes {
                t += &format!("    fix {}: {}\n", f.control_id, driftwatch_collector::policy::model::fix_line(&f.remediation));
            }
        }
        t
    })?;
    Ok(())
}

/// The arguments of `driftwatch-collector effectiveness`.
#[derive(Args)]
pub struct EffectivenessArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub framework: Option<String>,
    /// Start, RFC 3339 (e.g. 2026-01-01T00:00:00Z).
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End, RFC 3339; default now.
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this asset.
    #[arg(long)]
    pub asset: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Operating effectiveness over [from, to]: per asset, each control's and requirement's share of time passing, and when it did not.
pub async fn effectiveness(args: EffectivenessArgs) -> anyhow::Result<()> {
    let EffectivenessArgs { config, framework, from, to, asset, format } = args;
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
            let gaps: Vec<String> =
                e.not_passing.iter().map(|i| format!("{} {}→{}", i.status.as_str(), i.from.to_rfc3339(), i.to.to_rfc3339())).collect();
            t += &format!("{:<25} {:<43} {}  {}\n", e.asset_id, e.subject, share, gaps.join("; "));
        }
        t
    })?;
    Ok(())
}

/// The arguments of `driftwatch-collector report`.
#[derive(Args)]
pub struct ReportArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The framework (e.g. soc2, pci-dss, iso27001).
    #[arg(long)]
    pub framework: String,
    /// Start, RFC 3339.
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End, RFC 3339; default now.
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value = "html")]
    pub format: driftwatch_collector::report::render::Format,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// An audit-ready report for one framework over a period: summary and trend, requirements with their checks, operating effectiveness, gaps, waivers.
pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let ReportArgs { config, framework, from, to, format, output } = args;
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
    Ok(())
}

/// The arguments of `driftwatch-collector slo`.
#[derive(Args)]
pub struct SloArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// SLO status: SLI, error budget left, burn rates, SLA breach and credit, per configured objective.
pub async fn slo(args: SloArgs) -> anyhow::Result<()> {
    let SloArgs { config, format } = args;
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
    Ok(())
}
