//! An alert: labels that identify and route it, annotations that explain
//! it, and its lifecycle — the shape Alertmanager users know.
//!
//! Labels of a violation: `alertname="violation"`, `asset`, `control`,
//! `severity`, `frameworks` (e.g. `pci-dss:2.2.6,soc2:CC6.1`), `asset_kind`
//! when known, and every label of the asset (`env`, `team`, …) unless it
//! would shadow one of those. A drift alert has `alertname="drift"` and
//! `direction`; detections are violations of detection controls.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::matcher::Labels;
use crate::eval::drift::DriftEvent;
use crate::eval::{Transition, TransitionKind};

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    /// `title`, `summary`, `remediation`, `diff`, `cause`, …
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// Set once resolved.
    pub ends_at: Option<DateTime<Utc>>,
    /// The incident this alert instance belongs to (a violation id, a drift
    /// id): stable under redelivery and restarts.
    pub instance: String,
    /// A point event (drift): notified once, never resolved.
    #[serde(default)]
    pub one_shot: bool,
}

impl Alert {
    /// Identity of the alert: a hash of its labels (as Alertmanager).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }

    pub fn is_resolved(&self) -> bool {
        self.ends_at.is_some()
    }

    pub fn severity(&self) -> &str {
        self.labels.get("severity").map(String::as_str).unwrap_or("none")
    }

    /// The alert for a violation opened or resolved. `asset_labels` are the
    /// asset's own labels (routing by team, env, …).
    pub fn from_transition(t: &Transition, asset_labels: &BTreeMap<String, String>) -> Alert {
        let e = &t.evaluation;
        let mut labels = Labels::new();
        for (k, v) in asset_labels {
            labels.insert(k.clone(), v.clone());
        }
        labels.insert("alertname".into(), "violation".into());
        labels.insert("asset".into(), e.asset_id.clone());
        labels.insert("control".into(), e.control_id.clone());
        labels.insert("severity".into(), e.severity.as_str().into());
        labels.insert("frameworks".into(), e.frameworks.ids.join(","));
        let mut annotations = BTreeMap::new();
        annotations.insert("title".into(), e.title.clone());
        annotations.insert("summary".into(), format!("{} on {}", e.title, e.asset_id));
        annotations.insert("evidence".into(), evidence_text(&e.evidence));
        if let Some(m) = &e.message {
            annotations.insert("message".into(), m.clone());
        }
        let (starts_at, ends_at) = match t.kind {
            TransitionKind::Opened => (e.evaluated_at, None),
            // The start is not known here; receivers use the instance id.
            TransitionKind::Resolved => (e.evaluated_at, Some(e.evaluated_at)),
        };
        Alert { labels, annotations, starts_at, ends_at, instance: t.violation_id.clone(), one_shot: false }
    }

    /// The alert for a drift event (a point event).
    pub fn from_drift(d: &DriftEvent, asset_labels: &BTreeMap<String, String>) -> Alert {
        let e = &d.evaluation;
        let mut labels = Labels::new();
        for (k, v) in asset_labels {
            labels.insert(k.clone(), v.clone());
        }
        labels.insert("alertname".into(), "drift".into());
        labels.insert("asset".into(), e.asset_id.clone());
        labels.insert("control".into(), e.control_id.clone());
        labels.insert("severity".into(), e.severity.as_str().into());
        labels.insert("direction".into(), d.direction().into());
        labels.insert("frameworks".into(), e.frameworks.ids.join(","));
        let mut annotations = BTreeMap::new();
        annotations.insert("title".into(), e.title.clone());
        annotations.insert("summary".into(), format!("{}: {} → {} on {}", e.title, d.from.as_str(), e.status.as_str(), e.asset_id));
        let diff: Vec<String> = d
            .changed
            .iter()
            .map(|p| {
                let show = |v: Option<&driftwatch_schemas::FactValue>| {
                    v.map(|v| serde_json::to_string(v).unwrap_or_default()).unwrap_or_else(|| "null".into())
                };
                format!("{p}: {} → {}", show(d.before.get(p)), show(e.evidence.get(p)))
            })
            .collect();
        annotations.insert("diff".into(), diff.join("\n"));
        if let Some(c) = &d.cause {
            annotations.insert(
                "cause".into(),
                format!(
                    "{} by {} at {} ({})",
                    c.action,
                    c.user.as_deref().unwrap_or("unknown user"),
                    c.at.to_rfc3339(),
                    c.object.as_deref().unwrap_or(&c.matched)
                ),
            );
        }
        Alert { labels, annotations, starts_at: e.evaluated_at, ends_at: None, instance: d.drift_id.clone(), one_shot: true }
    }
}

fn evidence_text(e: &BTreeMap<String, driftwatch_schemas::FactValue>) -> String {
    e.iter().map(|(k, v)| format!("{k} = {}", serde_json::to_string(v).unwrap_or_default())).collect::<Vec<_>>().join("\n")
}

/// A hash of a label set, hex; the same labels give the same fingerprint.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}
