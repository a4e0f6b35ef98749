//! Alerts: what a violation opened or resolved looks like to a receiver,
//! and the delivery queue in front of the receivers.
//!
//! Each receiver has its own queue and task, so a slow or failing receiver
//! delays nobody else, and one receiver's notifications keep their order
//! (a resolve never overtakes its trigger).

pub mod webhook;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use driftwatch_schemas::FactValue;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::AlertsConfig;
use crate::eval::{Transition, TransitionKind};

/// A notification about one violation.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `firing` when the violation opened, `resolved` when it closed.
    pub status: &'static str,
    pub violation_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: &'static str,
    pub frameworks: BTreeMap<String, Vec<String>>,
    /// The facts the control read, as evaluated.
    pub evidence: BTreeMap<String, FactValue>,
    pub previous_status: Option<&'static str>,
    pub at: DateTime<Utc>,
}

impl From<&Transition> for Alert {
    fn from(t: &Transition) -> Self {
        let e = &t.evaluation;
        Alert {
            status: match t.kind {
                TransitionKind::Opened => "firing",
                TransitionKind::Resolved => "resolved",
            },
            violation_id: t.violation_id.clone(),
            asset_id: e.asset_id.clone(),
            control_id: e.control_id.clone(),
            title: e.title.clone(),
            severity: e.severity.as_str(),
            frameworks: e.frameworks.clone(),
            evidence: e.evidence.clone(),
            previous_status: t.previous.map(|s| s.as_str()),
            at: e.evaluated_at,
        }
    }
}

/// Queue capacity per receiver. Past it, new alerts for that receiver are
/// dropped with an error log rather than stalling ingestion.
const QUEUE: usize = 10_000;

/// Hands alerts to every configured receiver.
#[derive(Clone)]
pub struct Alerter {
    queues: Vec<(String, mpsc::Sender<Alert>)>,
}

impl Alerter {
    /// Starts one delivery task per receiver.
    pub fn start(cfg: &AlertsConfig) -> anyhow::Result<Self> {
        let mut queues = Vec::new();
        for w in &cfg.webhooks {
            let (tx, rx) = mpsc::channel(QUEUE);
            let receiver = webhook::Webhook::new(w)?;
            tokio::spawn(receiver.run(rx));
            queues.push((w.name.clone(), tx));
        }
        Ok(Alerter { queues })
    }

    /// Queues an alert for every receiver.
    pub fn send(&self, alert: &Alert) {
        for (name, q) in &self.queues {
            if let Err(e) = q.try_send(alert.clone()) {
                tracing::error!(receiver = %name, violation = %alert.violation_id, error = %e, "alert dropped: receiver queue full or closed");
            }
        }
    }
}
