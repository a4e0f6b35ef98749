//! The attestation task: every `attestations.check_secs`, on the leader,
//! each attested control's result ([`crate::attest`]) is written when it
//! changes (a new attestation, an expiry) as a batch of this task's own
//! evidence chain, and the reminders (`attestation_due`,
//! `attestation_expired`) are raised and resolved as conditions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::alerting::Alerting;
use super::conditions::Conditions;
use super::{Leader, OnLeader};
use crate::attest::{self, Standing};
use crate::evidence::Chain;
use crate::policy::{PolicySet, ORGANIZATION};
use crate::store::prelude::*;
use crate::store::{time, Batch, StoreError};

/// What the task has written (or found stored) per control: the result's
/// snapshot id (`attestation:<id>`) and status.
pub type Written = HashMap<String, (String, String)>;

/// One pass at `now`: writes the results that changed as a batch of
/// `chain`; returns them and every attestation (for the reminders).
pub async fn pass(
    policies: &PolicySet,
    store: &SharedStore,
    chain: &mut Chain,
    written: &mut Written,
    now: DateTime<Utc>,
) -> Result<(usize, Vec<crate::store::attestations::AttestationRow>), StoreError> {
    let all = store.attestations().await?;
    let latest = attest::latest(&all);
    let mut evaluations = Vec::new();
    for c in policies.controls.iter().filter(|c| c.attest.is_some()) {
        let standing = attest::standing(c, latest.get(c.control.id.as_str()).copied(), now);
        let (Some(status), Some(a)) = (standing.status(), standing.attestation()) else { continue };
        let want = (format!("attestation:{}", a.attestation_id), status.as_str().to_string());
        if !written.contains_key(&c.control.id) {
            // First look since this collector led: what is stored.
            if let Some(e) = store.evaluation_at(ORGANIZATION, &c.control.id, now).await? {
                written.insert(c.control.id.clone(), (e.snapshot_id, e.status));
            }
        }
        if written.get(&c.control.id) == Some(&want) {
            continue;
        }
        // Effective when attested, or when it expired: posture at a past
        // instant and reports see it then, not when this pass ran.
        let at = match &standing {
            Standing::Expired { expired, .. } => *expired,
            _ => time(a.attested_at),
        };
        if let Some(e) = standing.evaluation(c, at) {
            evaluations.push(e);
            written.insert(c.control.id.clone(), want);
        }
    }
    let n = evaluations.len();
    if n > 0 {
        let mut batch = Batch::new();
        batch.add_evaluations(evaluations, &[]);
        let mut next = chain.clone();
        batch.link = next.seal(&batch, now);
        if let Err(e) = store.write(&batch).await {
            // Not written: looked at again next pass.
            written.clear();
            return Err(e);
        }
        *chain = next;
        tracing::info!(results = n, "attested controls' results written");
    }
    Ok((n, all))
}

/// Runs until the process ends, while this collector runs fleet-wide work.
pub async fn run(policies: watch::Receiver<Arc<PolicySet>>, store: SharedStore, alerting: Alerting, every: Duration, leader: Leader) {
    let mut conditions = Conditions::restore(&attest::ALERTNAMES, &alerting).await;
    let mut chain = Chain::new(format!("{}/attestations", Chain::default_id()));
    let mut written = Written::new();
    let mut passes = OnLeader::new(every, Duration::ZERO, leader);
    loop {
        if passes.next().await.first {
            written.clear();
        }
        let set = policies.borrow().clone();
        let now = Utc::now();
        match pass(&set, &store, &mut chain, &mut written, now).await {
            Ok((_, all)) => conditions.update(attest::conditions(&set, &all, now), &alerting, now),
            Err(e) => tracing::warn!(error = %e, "writing attested controls' results failed; trying again next interval"),
        }
    }
}
