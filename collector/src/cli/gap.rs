//! `driftwatch-collector gap assign|state|accept-risk|history`: track a gap
//! (`<framework>:<requirement>`, as `gaps` lists it) to closure. Each
//! change is stored with who made it and recorded in the audit table;
//! accepting the risk makes a waiver of the requirement, fleet-wide.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use driftwatch_collector::policy::{PolicySet, Severity};
use driftwatch_collector::score::tracking::{self, Change, GapState};
use driftwatch_collector::store::prelude::*;
use driftwatch_collector::waiver::Waivers;

#[derive(Subcommand)]
pub enum GapCommand {
    /// Assign a gap to someone (an empty --to clears it).
    Assign {
        /// The gap, e.g. soc2:CC6.1.
        id: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Move a gap on: open, in_progress or resolved (risk_accepted is accept-risk).
    State {
        id: String,
        state: GapState,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Accept a gap's risk until a date: a waiver of the requirement, fleet-wide, and the gap's state risk_accepted.
    AcceptRisk {
        id: String,
        #[arg(long)]
        justification: String,
        /// Who approved it.
        #[arg(long)]
        approver: String,
        /// low, medium, high or critical.
        #[arg(long)]
        risk: Severity,
        /// RFC 3339.
        #[arg(long)]
        expires: DateTime<Utc>,
        #[arg(long, default_value = "")]
        ticket: String,
        #[arg(long)]
        by: String,
    },
    /// Every change of a gap's tracking, oldest first.
    History {
        id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: super::OutputFormat,
    },
}

impl GapCommand {
    fn id(&self) -> &str {
        match self {
            GapCommand::Assign { id, .. }
            | GapCommand::State { id, .. }
            | GapCommand::AcceptRisk { id, .. }
            | GapCommand::History { id, .. } => id,
        }
    }
}

pub async fn run(store: &SharedStore, set: &PolicySet, waivers: &Waivers, command: GapCommand) -> anyhow::Result<()> {
    let id = command.id().to_string();
    let (fw, req) =
        tracking::parse_gap_id(&id).with_context(|| format!("gap id {id:?}: expected <framework>:<requirement>, e.g. soc2:CC6.1"))?;
    anyhow::ensure!(set.requirement_ids(fw).iter().any(|r| r == req), "no requirement {req:?} in framework {fw:?}");
    let events = store.gap_events().await.context("reading gap tracking")?;
    let now = Utc::now();
    let (change, waiver_id, by) = match command {
        GapCommand::History { format, .. } => {
            let h = tracking::history(&events, &id);
            return super::print_out(format, &h, || {
                let mut t = String::from("CHANGED AT            STATE          ASSIGNEE       BY              NOTE\n");
                for c in &h {
                    t += &format!(
                        "{:<21} {:<14} {:<14} {:<15} {}\n",
                        c.changed_at.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default(),
                        c.state.as_str(),
                        c.assignee.as_deref().unwrap_or("-"),
                        c.changed_by,
                        c.waiver_id.as_ref().map_or(c.note.clone(), |w| format!("waiver {w}. {}", c.note))
                    );
                }
                t
            });
        }
        GapCommand::Assign { to, by, note, .. } => (Change { assignee: Some(to), note, ..Default::default() }, None, by),
        GapCommand::State { state, by, note, .. } => {
            anyhow::ensure!(state != GapState::RiskAccepted, "a gap's risk is accepted with `gap accept-risk` (it makes the waiver)");
            (Change { state: Some(state), note, ..Default::default() }, None, by)
        }
        GapCommand::AcceptRisk { justification, approver, risk, expires, ticket, by, .. } => {
            let spec = tracking::risk_waiver(&id, justification, approver, risk, expires, ticket);
            let w = driftwatch_collector::waiver::request(spec, "cli", format!("cli:{by}"), waivers, now)
                .map_err(|p| anyhow::anyhow!("invalid waiver:\n  {}", p.join("\n  ")))?;
            store.put_waiver(&w.row(now)).await.context("storing the waiver")?;
            println!("waiver {}", w.spec.id);
            (Change { state: Some(GapState::RiskAccepted), ..Default::default() }, Some(w.spec.id), by)
        }
    };
    let current = tracking::latest(&events).remove(&id);
    let row = tracking::change_row(&id, current.as_ref(), change, waiver_id, &format!("cli:{by}"), now).map_err(|e| anyhow::anyhow!(e))?;
    store.put_gap_event(&row).await.context("storing the change")?;
    let detail = serde_json::to_string(&row)?;
    store
        .record_api_write(&format!("cli:{by}"), "CLI", &format!("gap {id} {}", row.state), 0, &detail)
        .await
        .context("recording the change in the audit table")?;
    println!("{id} {}{}", row.state, if row.assignee.is_empty() { String::new() } else { format!(" ({})", row.assignee) });
    Ok(())
}
