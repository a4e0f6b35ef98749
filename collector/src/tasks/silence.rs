//! The silent-asset task: every `evaluation.evidence_check_secs`, on the
//! leader, the latest results of assets silent for
//! `evaluation.unknown_after_secs` become `unknown`
//! ([`crate::eval::silence`]), stored as a batch of this task's own
//! evidence chain.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::{Leader, OnLeader};
use crate::eval::silence::unknown_results;
use crate::evidence::Chain;
use crate::policy::PolicySet;
use crate::store::prelude::*;
use crate::store::{Batch, StoreError};

/// One pass: marks the results of assets silent at `now`, as a batch of
/// `chain` (this task's own evidence chain); returns how many.
pub async fn mark(
    policies: &PolicySet,
    store: &SharedStore,
    chain: &mut Chain,
    unknown_after: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let silent = store.silent_results(now - unknown_after).await?;
    let evaluations = unknown_results(policies, &silent, unknown_after);
    if evaluations.is_empty() {
        return Ok(0);
    }
    let (results, assets) =
        (evaluations.len(), evaluations.iter().map(|e| e.asset_id.as_str()).collect::<std::collections::BTreeSet<_>>().len());
    let mut batch = Batch::new();
    batch.add_evaluations(evaluations, &[]);
    let mut next = chain.clone();
    batch.link = next.seal(&batch, now);
    store.write(&batch).await?;
    *chain = next;
    tracing::warn!(results, assets, "assets went silent: their results are unknown until they report again");
    crate::metrics::METRICS.assets_gone_silent.inc_by(assets as u64);
    Ok(results)
}

/// Runs until the process ends, while this collector runs fleet-wide work.
pub async fn run(
    policies: watch::Receiver<std::sync::Arc<PolicySet>>,
    store: SharedStore,
    unknown_after: chrono::Duration,
    every: Duration,
    leader: Leader,
) {
    let mut chain = Chain::new(format!("{}/silence", Chain::default_id()));
    let mut passes = OnLeader::new(every, Duration::ZERO, leader);
    loop {
        passes.next().await;
        let set = policies.borrow().clone();
        if let Err(e) = mark(&set, &store, &mut chain, unknown_after, Utc::now()).await {
            tracing::warn!(error = %e, "checking for silent assets failed; trying again next interval");
        }
    }
}
