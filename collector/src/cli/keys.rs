//! `driftwatch-collector keys list|approve|revoke`: the keys agents sign
//! with, per asset (see `identity`). Approving a key pins it (and revokes
//! any other pinned key of the asset): enrolment ahead of an agent's first
//! record, or acceptance of a reinstalled agent's new key. Every decision
//! is stored as a new version and recorded in the audit table; running
//! collectors act on it within `identity.refresh_secs` (at once for a
//! record they would refuse).

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use driftwatch_collector::identity::Decision;
use driftwatch_collector::store::keys::AssetKeyRow;
use driftwatch_collector::store::prelude::*;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List agents' keys per asset, with their standing (pinned, pending, revoked).
    List {
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
        /// Only keys of this standing: pinned, pending or revoked.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
    /// Pin a key for an asset: its records are the asset's word; any other pinned key of the asset is revoked.
    Approve {
        asset: String,
        /// The key's fingerprint, as `driftwatch-agent identity` prints it (sha256:…).
        fingerprint: String,
        /// Who decides (recorded with the key and in the audit table).
        #[arg(long)]
        by: String,
        /// Why (a ticket, "host reinstalled").
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a key of an asset: its records are refused from now on.
    Revoke {
        asset: String,
        fingerprint: String,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn run(store: &SharedStore, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List { asset, status, format } => {
            if let Some(s) = &status {
                anyhow::ensure!(
                    driftwatch_collector::identity::KeyStatus::parse(s).is_some(),
                    "--status {s:?}: expected pinned, pending or revoked"
                );
            }
            let keys: Vec<AssetKeyRow> = store
                .asset_keys(asset.as_deref())
                .await
                .context("reading agents' keys")?
                .into_iter()
                .filter(|k| status.as_ref().is_none_or(|s| &k.status == s))
                .collect();
            super::print_out(format, &keys, || {
                let mut t = String::from("ASSET                    STATUS   FINGERPRINT                                                              DECIDED               BY\n");
                for k in &keys {
                    let decided = driftwatch_collector::store::time(k.decided_at).format("%Y-%m-%dT%H:%M:%SZ");
                    t += &format!("{:<24} {:<8} {:<72} {decided:<21} {}\n", k.asset_id, k.status, k.fingerprint, k.decided_by);
                }
                t
            })?;
        }
        KeysCommand::Approve { asset, fingerprint, by, reason } => {
            let rows = decide(store, Decision::Approve, &asset, &fingerprint, &by, &reason).await?;
            println!("pinned {fingerprint} for {asset}");
            for r in &rows[1..] {
                println!("revoked {} (replaced)", r.fingerprint);
            }
        }
        KeysCommand::Revoke { asset, fingerprint, by, reason } => {
            decide(store, Decision::Revoke, &asset, &fingerprint, &by, &reason).await?;
            println!("revoked {fingerprint} for {asset}");
        }
    }
    Ok(())
}

/// Stores an operator's decision on one key of one asset, and records it
/// in the audit table; returns the new versions.
async fn decide(
    store: &SharedStore,
    d: Decision,
    asset: &str,
    fingerprint: &str,
    by: &str,
    reason: &str,
) -> anyhow::Result<Vec<AssetKeyRow>> {
    let verb = d.verb();
    anyhow::ensure!(!by.trim().is_empty(), "--by must name who decides ({verb})");
    let keys = store.asset_keys(Some(asset)).await.context("reading the asset's keys")?;
    let (now, who) = (Utc::now(), format!("cli:{by}"));
    let rows = d.rows(&keys, asset, fingerprint, &who, reason, now).map_err(anyhow::Error::msg)?;
    store.put_asset_keys(&rows).await.context("storing the decision")?;
    store
        .record_api_write(&who, "CLI", &format!("keys {verb} {asset} {fingerprint}"), 0, reason)
        .await
        .context("recording the change in the audit table")?;
    Ok(rows)
}
