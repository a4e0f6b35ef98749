//! `driftwatch-collector silence add|list|expire`: silences mute alerts
//! matching label matchers for a while; stored, like those created
//! through the API.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use driftwatch_collector::alert::matcher::Matcher;
use driftwatch_collector::alert::mute::Silence;
use driftwatch_collector::config::CollectorConfig;

use super::{connect, print_out, OutputFormat};

#[derive(Subcommand)]
pub enum SilenceCommand {
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

/// `driftwatch-collector silence add|list|expire`.
pub async fn run(config: Option<&Path>, command: SilenceCommand) -> anyhow::Result<()> {
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
