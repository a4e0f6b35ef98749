//! Reminder alerts: a waiver about to expire (`waiver_expiring`), raised
//! by the waiver task ([`crate::tasks::waivers`]) while it holds.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::matcher::Labels;
use super::model::Alert;
use crate::waiver::Waiver;

/// `waiver_expiring` alerts for waivers in force that end within `days`.
pub fn reminders(waivers: &[Waiver], days: u32, now: DateTime<Utc>) -> Vec<Alert> {
    if days == 0 {
        return Vec::new();
    }
    waivers
        .iter()
        .filter(|w| w.in_force(now) && w.spec.expires - now <= chrono::Duration::days(i64::from(days)))
        .map(|w| {
            let target = w.target().to_string();
            let mut labels = Labels::new();
            labels.insert("alertname".into(), "waiver_expiring".into());
            labels.insert("severity".into(), "medium".into());
            labels.insert("waiver".into(), w.spec.id.clone());
            labels.insert(if w.spec.control.is_some() { "control" } else { "requirement" }.into(), target.clone());
            let left = w.spec.expires - now;
            let summary = format!(
                "waiver {} of {target} expires in {}d {}h ({}); the control will fail again",
                w.spec.id,
                left.num_days(),
                left.num_hours() % 24,
                w.spec.expires.format("%Y-%m-%dT%H:%M:%SZ")
            );
            let mut annotations = BTreeMap::new();
            annotations.insert("title".into(), summary.clone());
            annotations.insert("summary".into(), summary);
            annotations.insert("approver".into(), w.spec.approver.clone());
            annotations.insert("justification".into(), w.spec.justification.clone());
            annotations.insert("risk".into(), w.spec.risk.as_str().into());
            annotations.insert("expires".into(), w.spec.expires.to_rfc3339());
            if !w.spec.ticket.is_empty() {
                annotations.insert("ticket".into(), w.spec.ticket.clone());
            }
            let mut a = Alert { labels, annotations, starts_at: now, ends_at: None, instance: String::new(), one_shot: false };
            a.instance = format!("{}@{}", a.fingerprint(), w.spec.expires.timestamp());
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_fire_within_the_window_and_name_the_waiver() {
        let text = "waivers:\n  - id: w1\n    control: root\n    scope: {assets: [a]}\n    justification: j\n    approver: ciso\n    risk: low\n    expires: 2030-01-01T00:00:00Z\n";
        let w = crate::waiver::load_text(std::path::Path::new("w.yaml"), text).unwrap();
        let before = w[0].spec.expires - chrono::Duration::days(20);
        assert!(reminders(&w, 14, before).is_empty());
        let near = w[0].spec.expires - chrono::Duration::days(3);
        let r = reminders(&w, 14, near);
        assert_eq!(r[0].labels.get("waiver").map(String::as_str), Some("w1"));
        assert_eq!(r[0].labels.get("control").map(String::as_str), Some("root"));
        assert!(r[0].annotations["summary"].contains("expires in 3d 0h"), "{:?}", r[0].annotations);
        assert!(reminders(&w, 14, w[0].spec.expires).is_empty(), "expired: the reminder resolves");
    }
}
