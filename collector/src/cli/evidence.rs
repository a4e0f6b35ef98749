//! The evidence's lifecycle: `verify` (recompute the chains of a period,
//! exit 1 on any finding) and `retention` (drop months past retention).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use driftwatch_collector::config::CollectorConfig;
use driftwatch_collector::store::prelude::*;

use super::{connect, print_out, OutputFormat};

/// The arguments of `driftwatch-collector verify`.
#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Start, RFC 3339.
    #[arg(long)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End, RFC 3339; default now.
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Recompute the evidence chains from ClickHouse for a period and report every batch altered, inserted or deleted; exit 1 if any.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let VerifyArgs { config, from, to, format } = args;
    let to = to.unwrap_or_else(chrono::Utc::now);
    anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
    let cfg = CollectorConfig::load(config.as_deref())?;
    let store = connect(&cfg).await?;
    let v = verify_evidence(&store, from, to).await.context("reading the evidence")?;
    print_out(format, &v, || {
        let mut t = format!(
            "{} chains, {} links, {} rows, {} hourly roots, {} attested evidence files checked: ",
            v.chains, v.links, v.rows, v.roots, v.files
        );
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
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The arguments of `driftwatch-collector retention`.
#[derive(Args)]
pub struct RetentionArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Drop the monthly partitions every day of which is older than its table's retention (`retention.days`); --dry-run only lists them.
pub async fn retention(args: RetentionArgs) -> anyhow::Result<()> {
    let RetentionArgs { config, dry_run, format } = args;
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
    let mut v = driftwatch_collector::evidence::verify::verify(&links, &outside, &rows, &roots);
    // Attestations of the period: their files against their SHA-256.
    let (from_s, to_s) = (driftwatch_collector::store::secs(&from), driftwatch_collector::store::secs(&to));
    for a in store.attestations().await?.iter().filter(|a| (from_s..=to_s).contains(&a.attested_at)) {
        let mut files = std::collections::HashMap::new();
        for sha in &a.file_sha256 {
            if let Some(f) = store.attestation_file(sha).await? {
                files.insert(sha.clone(), f);
            }
        }
        v.files += a.file_sha256.len();
        v.findings.extend(driftwatch_collector::attest::check_files(a, |sha| files.get(sha)));
    }
    Ok(v)
}
