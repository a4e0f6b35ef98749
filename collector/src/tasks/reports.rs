//! The scheduled-reports task: every `reports.check_secs`, on the leader,
//! each schedule whose report is due ([`crate::report::schedule`]) gets
//! its framework's report over the last `every`, built from the store like
//! `driftwatch-collector report`, delivered to each of its receivers that
//! has not had it yet, and logged in the notification log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::{Leader, OnLeader};
use crate::policy::PolicySet;
use crate::receivers::{Receiver, Scheduled};
use crate::report::schedule::{self, ReportsConfig, Schedule};
use crate::store::prelude::*;
use crate::store::records::NotificationRow;
use crate::waiver::Waivers;

/// What the task reads.
pub struct Inputs {
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub waivers: watch::Receiver<Arc<Waivers>>,
    pub store: SharedStore,
    /// The receivers the schedules name, by name.
    pub receivers: BTreeMap<String, Receiver>,
}

/// Runs until the process ends, while this collector runs fleet-wide work.
pub async fn run(cfg: ReportsConfig, inputs: Inputs, leader: Leader) {
    // The first look one interval after the start, not while restoring.
    let every = Duration::from_secs(cfg.check_secs);
    let mut passes = OnLeader::new(every, every, leader);
    loop {
        passes.next().await;
        for s in &cfg.schedules {
            if let Err(e) = pass(s, &inputs).await {
                tracing::warn!(schedule = %s.name, error = %e, "scheduled report failed; trying again next interval");
            }
        }
    }
}

/// Sends `s`'s report to each of its receivers it is due for.
async fn pass(s: &Schedule, i: &Inputs) -> anyhow::Result<()> {
    let now = Utc::now();
    let key = s.log_key();
    let log = i.store.notification_log_for(std::slice::from_ref(&key)).await?;
    let due: Vec<&String> = s
        .receivers
        .iter()
        .filter(|r| {
            let last = log.iter().filter(|l| &l.receiver == *r).map(|l| crate::store::time(l.sent_at)).max();
            schedule::due(last, s.every(), now)
        })
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let (policies, waivers) = (i.policies.borrow().clone(), i.waivers.borrow().clone());
    let inputs = crate::report::gather(&i.store, &policies, &waivers, &s.framework, now - s.every(), now).await?;
    let report = crate::report::build(&inputs, now);
    let name = format!("{}-{}.{}", s.framework, now.format("%Y-%m-%d"), s.format.extension());
    let message = Scheduled {
        schedule: s.name.clone(),
        subject: schedule::subject(&report),
        text: schedule::summary(&report, &name),
        attachment: (name, s.format.content_type().to_string(), crate::report::render::render(&report, s.format)),
        json: serde_json::to_value(&report)?,
    };
    for r in due {
        let Some(receiver) = i.receivers.get(r) else { continue };
        if receiver.deliver_report(&message).await {
            let row = NotificationRow {
                receiver: r.clone(),
                group_key: key.clone(),
                sent_at: crate::store::secs(&Utc::now()),
                status: "report".into(),
                escalation: 0,
                firing: Vec::new(),
                alerts: "[]".into(),
            };
            i.store.record_notifications(&[row]).await?;
        }
    }
    Ok(())
}
