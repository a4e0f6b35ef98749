//! The SLO task: every `slo.interval_secs`, on the leader, it refreshes the
//! minute rollups, computes every SLO's status and raises or resolves the
//! conditions of [`crate::slo::conditions`].

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alerting::Alerting;
use super::conditions::Conditions;
use super::{Leader, OnLeader};
use crate::alert::model::Alert;
use crate::slo::conditions::{conditions, SloSettings, ALERTNAMES};
use crate::slo::{SloConfig, Status};
use crate::store::prelude::*;

/// Runs until the process ends.
pub async fn run(settings: SloSettings, store: SharedStore, alerting: Alerting, leader: Leader) {
    if settings.objectives.is_empty() && settings.silent_after_secs == 0 {
        return;
    }
    let mut held = Conditions::restore(&ALERTNAMES, &alerting).await;
    let mut passes = OnLeader::new(Duration::from_secs(settings.interval_secs.max(1)), Duration::ZERO, leader);
    loop {
        passes.next().await;
        match evaluate(&settings, &store).await {
            Ok(holding) => held.update(holding, &alerting, Utc::now()),
            Err(e) => tracing::warn!(error = %e, "SLO evaluation failed; conditions unchanged until the next try"),
        }
    }
}

/// One pass: rollups, statuses, conditions.
pub async fn evaluate(settings: &SloSettings, store: &SharedStore) -> Result<Vec<Alert>, crate::store::StoreError> {
    let now = Utc::now();
    store.refresh_sla_rollups(now - chrono::Duration::minutes(15), now + chrono::Duration::minutes(1)).await?;
    let statuses = statuses(settings, store, now).await?;
    let probes: Vec<String> = settings.objectives.iter().flat_map(|s| s.sli.probes.clone()).collect();
    let seen: HashMap<String, DateTime<Utc>> =
        if probes.is_empty() { HashMap::new() } else { store.probes_last_seen(&probes).await?.into_iter().collect() };
    let assets = if settings.silent_after_secs > 0 { store.assets_last_seen().await? } else { Vec::new() };
    Ok(conditions(&statuses, &seen, &assets, settings, now))
}

/// Every SLO's status now.
pub async fn statuses(
    settings: &SloSettings,
    store: &SharedStore,
    now: DateTime<Utc>,
) -> Result<Vec<(SloConfig, Status)>, crate::store::StoreError> {
    let mut out = Vec::new();
    for slo in &settings.objectives {
        let from = now - slo.window().max(chrono::Duration::days(3));
        let minutes = store.slo_minutes(&slo.sli.probes, slo.latency_ms(), from).await?;
        out.push((slo.clone(), Status::compute(slo, &minutes, now)));
    }
    Ok(out)
}
