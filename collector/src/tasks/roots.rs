//! The evidence-roots task: every five minutes, on the leader, the
//! completed hours of every chain get their Merkle root
//! ([`crate::evidence::roots::due`]), stored beside the links; and the
//! last two days' links and roots are checked
//! ([`crate::evidence::verify::verify_links`]): what they show wrong is
//! `driftwatch_evidence_findings` (a broken chain alerts through
//! Prometheus without waiting for someone to run `verify`).

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};

use super::{Leader, OnLeader};
use crate::evidence::roots::due;
use crate::store::prelude::*;
use crate::store::StoreError;

/// One pass; returns how many roots were stored.
pub async fn record(store: &SharedStore, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let from = (now - chrono::Duration::days(2)).duration_trunc(chrono::Duration::hours(1)).unwrap_or(now);
    let links = store.evidence_links(from, now).await?;
    let stored = store.evidence_roots(from, now).await?;
    let findings = crate::evidence::verify::verify_links(&links, &stored);
    for f in findings.iter().take(10) {
        tracing::error!(finding = %f, "the evidence chain does not hold (run `driftwatch-collector verify` for the whole period)");
    }
    crate::metrics::METRICS.evidence_findings.set(findings.len() as i64);
    let done: Vec<(String, DateTime<Utc>)> = stored.into_iter().map(|r| (r.chain_id, r.hour)).collect();
    let roots = due(&links, &done, now);
    for (chain, hour, root, first, last, n) in &roots {
        store.put_root(chain, *hour, root.clone(), *first, *last, *n).await?;
    }
    Ok(roots.len())
}

/// Runs until the process ends, while this collector runs fleet-wide work.
pub async fn run(store: SharedStore, leader: Leader) {
    let mut passes = OnLeader::new(Duration::from_secs(300), Duration::ZERO, leader);
    loop {
        passes.next().await;
        match record(&store, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(roots = n, "hourly evidence roots recorded"),
            Err(e) => tracing::warn!(error = %e, "recording evidence roots failed; trying again later"),
        }
    }
}
