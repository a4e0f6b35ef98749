//! Alerts for conditions that either hold or not (an SLO burning its
//! budget, a waiver about to expire): an alert fires when its condition
//! starts holding and resolves when it stops. The conditions notified
//! before a restart are where a task starts from (the notification log, as
//! alerting read it at start), so a restart neither repeats nor loses them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::alerting::Alerting;
use crate::alert::model::Alert;

/// The conditions of one task (the alert names it owns) that hold.
pub struct Conditions {
    active: HashMap<String, Alert>,
}

impl Conditions {
    /// Restores the conditions of `alertnames` notified before the start
    /// (the notification log as alerting read it) and hands them to the
    /// dispatcher (which knows they were notified).
    pub async fn restore(alertnames: &[&str], alerting: &Alerting) -> Self {
        let active: HashMap<String, Alert> = alerting.notified(alertnames).await.into_iter().map(|a| (a.fingerprint(), a)).collect();
        for a in active.values() {
            alerting.send(a.clone());
        }
        Conditions { active }
    }

    /// The conditions that hold now: new ones fire, gone ones resolve.
    pub fn update(&mut self, holding: Vec<Alert>, alerting: &Alerting, now: DateTime<Utc>) {
        let holding: HashMap<String, Alert> = holding.into_iter().map(|a| (a.fingerprint(), a)).collect();
        for (fp, a) in &holding {
            if !self.active.contains_key(fp) {
                tracing::warn!(alert = ?a.labels, "condition holds");
                alerting.send(a.clone());
                self.active.insert(fp.clone(), a.clone());
            }
        }
        let cleared: Vec<String> = self.active.keys().filter(|fp| !holding.contains_key(*fp)).cloned().collect();
        for fp in cleared {
            if let Some(mut a) = self.active.remove(&fp) {
                tracing::info!(alert = ?a.labels, "condition cleared");
                a.ends_at = Some(now);
                alerting.send(a);
            }
        }
    }
}
