//! `driftwatch-collector attestation add|list|file`: attest an attested
//! control with a statement and evidence files (stored with their SHA-256,
//! recorded in the audit table), see where each attested control stands,
//! and get an evidence file back, checked against its digest.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use driftwatch_collector::attest::{self, Claim, Limits, Upload};
use driftwatch_collector::policy::PolicySet;
use driftwatch_collector::store::prelude::*;

#[derive(Subcommand)]
pub enum AttestationCommand {
    /// Attest an attested control (one with `attest:` in its pack): its result is this attestation's status until the control's cadence has passed.
    Add {
        /// The attested control, e.g. org.access_review.
        control: String,
        /// pass (the control is met) or fail (it is not).
        #[arg(long, default_value = "pass")]
        status: String,
        /// Who attests (recorded with the attestation and in the audit table).
        #[arg(long)]
        by: String,
        /// What was done and found, in a sentence or a paragraph.
        #[arg(long)]
        statement: String,
        /// An evidence file (repeatable); its content type comes from its extension (pdf, png, jpg, txt, csv, md, json, xlsx, docx) and is checked against its bytes.
        #[arg(long = "file")]
        files: Vec<PathBuf>,
    },
    /// List the attested controls: owner, cadence, state (never, holding, due, expired), the latest attestation.
    List {
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
    /// Write an evidence file (by its SHA-256) to --out or standard output, after checking it still has that digest.
    File {
        sha256: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(store: &SharedStore, set: &PolicySet, limits: Limits, command: AttestationCommand) -> anyhow::Result<()> {
    match command {
        AttestationCommand::Add { control, status, by, statement, files } => {
            let uploads = files.iter().map(|p| read(p, limits.max_file_bytes)).collect::<anyhow::Result<Vec<_>>>()?;
            let claim = Claim { control_id: control, status, statement, attested_by: by.clone(), source: "cli".into() };
            let (row, stored) =
                attest::accept(set, claim, uploads, limits, Utc::now()).map_err(|e| anyhow::anyhow!("attestation refused: {e}"))?;
            store.put_attestation(&row, &stored).await.context("storing the attestation")?;
            let detail = serde_json::to_string(&row)?;
            store
                .record_api_write(&format!("cli:{by}"), "CLI", &format!("attestation add {}", row.control_id), 0, &detail)
                .await
                .context("recording the attestation in the audit table")?;
            println!("{}", row.attestation_id);
            for (name, sha) in row.file_names.iter().zip(&row.file_sha256) {
                println!("  {name} sha256:{sha}");
            }
        }
        AttestationCommand::List { format } => {
            let all = store.attestations().await.context("reading attestations")?;
            let list = attest::listing(set, &all, Utc::now());
            super::print_out(format, &list, || {
                let mut t = String::from(
                    "CONTROL                              OWNER              CADENCE  STATE    STATUS   EXPIRES     LAST ATTESTED BY\n",
                );
                for l in &list {
                    t += &format!(
                        "{:<36} {:<18} {:<8} {:<8} {:<8} {:<11} {}\n",
                        l.control_id,
                        l.owner,
                        format!("{}d", l.cadence_days),
                        l.state,
                        l.status.map_or("-", |s| s.as_str()),
                        l.expires_at.map_or("-".into(), |e| e.format("%Y-%m-%d").to_string()),
                        l.latest.as_ref().map_or("-", |a| a.attested_by.as_str())
                    );
                }
                t
            })?;
        }
        AttestationCommand::File { sha256, out } => {
            let f = store.attestation_file(&sha256.to_ascii_lowercase()).await.context("reading the evidence file")?;
            let f = f.with_context(|| format!("no evidence file with SHA-256 {sha256}"))?;
            let bytes =
                attest::file_bytes(&f).with_context(|| format!("the stored file no longer has SHA-256 {}: it was altered", f.sha256))?;
            match out {
                Some(p) => std::fs::write(&p, &bytes).with_context(|| format!("writing {}", p.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
            }
        }
    }
    Ok(())
}

/// Reads an evidence file, refusing one larger than `max` before reading it.
fn read(path: &PathBuf, max: u64) -> anyhow::Result<Upload> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(bytes.len() as u64 <= max, "{}: larger than {max} bytes (attestations.max_file_bytes)", path.display());
    Ok(Upload { name: path.display().to_string(), content_type: None, bytes })
}
