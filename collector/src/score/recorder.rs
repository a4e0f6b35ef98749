//! Records compliance scores over time (the `scores` table, read by the
//! posture dashboard): every `evaluation.score_interval_secs`, fleet-wide
//! and per value of every asset label, computed exactly as the `posture`
//! command does. Only the collector running fleet-wide work records them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::clickhouse::Row;
use chrono::Utc;
use serde::Serialize;

use super::{scores, GroupBy};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Row, Serialize)]
struct ScoreRow {
    at: u32,
    framework: String,
    scope: String,
    label_key: String,
    group_value: String,
    score: f64,
    passing: u32,
    partial: u32,
    failing: u32,
    applicable: u32,
}

/// Runs until the process ends. Packs are re-read each time (so a reload
/// is followed); an invalid set is skipped with a warning.
pub async fn run(policies: PathBuf, store: ClickHouseStore, every: Duration, leader: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !leader.load(Ordering::SeqCst) {
            continue;
        }
        if let Err(e) = record(&policies, &store).await {
            tracing::warn!(error = %e, "recording scores failed; trying again next interval");
        }
    }
}

/// One recording; returns the rows written.
pub async fn record(policies: &std::path::Path, store: &ClickHouseStore) -> anyhow::Result<usize> {
    let set = crate::policy::load_dir(policies).map_err(|e| anyhow::anyhow!("policy packs invalid, scores not recorded: {e}"))?;
    let results = store.current_results().await?;
    let at = Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32;
    let mut rows = Vec::new();
    let mut push = |scope: &str, key: &str, s: super::Score| {
        rows.push(ScoreRow {
            at,
            framework: s.framework,
            scope: scope.into(),
            label_key: key.into(),
            group_value: s.group,
            score: s.score,
            passing: s.passing as u32,
            partial: s.partial as u32,
            failing: s.failing as u32,
            applicable: s.applicable as u32,
        })
    };
    for s in scores(&set, &results, None, &GroupBy::Fleet) {
        push("fleet", "", s);
    }
    let keys: BTreeSet<String> = results.iter().flat_map(|r| r.labels.keys().cloned()).collect();
    for k in keys {
        for s in scores(&set, &results, None, &GroupBy::Label(k.clone())) {
            push("label", &k, s);
        }
    }
    let n = rows.len();
    store.insert_rows("scores", &rows).await?;
    Ok(n)
}
