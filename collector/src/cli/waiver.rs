//! `driftwatch-collector waiver add|list|revoke`: waivers created here are
//! stored (like those created through the API) and every change is
//! recorded in the audit table. Waivers declared in YAML beside the packs
//! are changed in their files, not here.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use driftwatch_collector::policy::Severity;
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::waiver::{Scope, Waiver, WaiverSpec, Waivers};

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum WaiverCommand {
    /// Exempt a failing control (or one framework requirement) for a scope until an expiry date; prints the waiver's id.
    Add {
        /// The control exempted.
        #[arg(long, required_unless_present = "requirement", conflicts_with = "requirement")]
        control: Option<String>,
        /// Or one framework requirement, as framework:id (e.g. pci-dss:2.2.6).
        #[arg(long)]
        requirement: Option<String>,
        /// An asset id in scope (repeatable).
        #[arg(long = "asset")]
        assets: Vec<String>,
        /// A label the assets in scope carry, KEY=VALUE (repeatable; all must hold).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Only assets of this cluster (label `cluster`).
        #[arg(long)]
        cluster: Option<String>,
        /// Only assets of this namespace (label `namespace`).
        #[arg(long)]
        namespace: Option<String>,
        /// Every asset (must be said explicitly).
        #[arg(long)]
        fleet: bool,
        /// Why the risk is accepted.
        #[arg(long)]
        justification: String,
        /// Who approved it.
        #[arg(long)]
        approver: String,
        /// Risk rating: low, medium, high or critical.
        #[arg(long)]
        risk: String,
        /// Ticket id or link.
        #[arg(long, default_value = "")]
        ticket: String,
        /// Start, RFC 3339; default now.
        #[arg(long)]
        starts: Option<DateTime<Utc>>,
        /// Expiry, RFC 3339.
        #[arg(long)]
        expires: DateTime<Utc>,
        /// Id; default a generated one.
        #[arg(long)]
        id: Option<String>,
        /// Who is creating it (recorded in the audit table).
        #[arg(long)]
        by: String,
    },
    /// List waivers: in force or pending by default, with --all revoked and expired ones too.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
    /// Revoke a waiver now: its controls fail again (and alert) at once.
    Revoke {
        id: String,
        /// Who is revoking it (recorded in the audit table).
        #[arg(long)]
        by: String,
    },
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--label {l:?}: expected KEY=VALUE"),
        })
        .collect()
}

pub async fn run(store: &SharedStore, waivers: &Waivers, command: WaiverCommand) -> anyhow::Result<()> {
    let now = Utc::now();
    match command {
        WaiverCommand::Add {
            control,
            requirement,
            assets,
            labels,
            cluster,
            namespace,
            fleet,
            justification,
            approver,
            risk,
            ticket,
            starts,
            expires,
            id,
            by,
        } => {
            let risk: Severity = serde_json::from_value(serde_json::Value::String(risk.clone()))
                .map_err(|_| anyhow::anyhow!("--risk {risk:?}: expected low, medium, high or critical"))?;
            let spec = WaiverSpec {
                id: id.unwrap_or_default(),
                control,
                requirement,
                scope: Scope { assets, labels: parse_labels(&labels)?, cluster, namespace, fleet },
                justification,
                approver,
                risk,
                ticket,
                starts,
                expires,
            };
            anyhow::ensure!(!by.trim().is_empty(), "--by must name who creates the waiver");
            let w = driftwatch_collector::waiver::request(spec, "cli", format!("cli:{by}"), waivers, now)
                .map_err(|p| anyhow::anyhow!("invalid waiver:\n  {}", p.join("\n  ")))?;
            store.put_waiver(&w.row(chrono::Utc::now())).await.context("storing the waiver")?;
            audit(store, &by, &format!("waiver add {}", w.spec.id), &serde_json::to_string(&w)?).await?;
            println!("{}", w.spec.id);
        }
        WaiverCommand::List { all, format } => {
            let list: Vec<&Waiver> = waivers.list.iter().filter(|w| all || (w.revoked_at.is_none() && w.spec.expires > now)).collect();
            super::print_out(format, &list, || {
                let mut t = String::from(
                    "ID                     TARGET                          STATE     EXPIRES               RISK      APPROVER / SOURCE\n",
                );
                for w in &list {
                    let state = w.state(now).replace('_', " ");
                    let target = w.target();
                    t += &format!(
                        "{:<22} {:<31} {:<9} {:<21} {:<9} {} / {}\n",
                        w.spec.id,
                        target,
                        state,
                        w.spec.expires.format("%Y-%m-%dT%H:%M:%SZ"),
                        w.spec.risk.as_str(),
                        w.spec.approver,
                        w.source
                    );
                }
                for f in &waivers.flags {
                    t += &format!("warning: {f}\n");
                }
                t
            })?;
        }
        WaiverCommand::Revoke { id, by } => {
            anyhow::ensure!(!by.trim().is_empty(), "--by must name who revokes the waiver");
            let w = driftwatch_collector::waiver::revoke(waivers, &id, format!("cli:{by}"), now)?;
            store.put_waiver(&w.row(chrono::Utc::now())).await.context("storing the revocation")?;
            audit(store, &by, &format!("waiver revoke {id}"), "").await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn audit(store: &SharedStore, by: &str, what: &str, detail: &str) -> anyhow::Result<()> {
    store.record_api_write(&format!("cli:{by}"), "CLI", what, 0, detail).await.context("recording the change in the audit table")
}
