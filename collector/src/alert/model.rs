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
use driftwatch_schemas::FactValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::matcher::Labels;
use crate::eval::drift::DriftEvent;
use crate::eval::{Transition, TransitionKind};
use crate::store::alerting::OpenViolation;

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
    /// The alert of a condition that holds since `starts_at` (the `title`
    /// is the `summary` unless given): one instance per time it starts.
    pub fn condition(labels: Labels, mut annotations: BTreeMap<String, String>, starts_at: DateTime<Utc>) -> Alert {
        if let Some(summary) = annotations.get("summary").filter(|_| !annotations.contains_key("title")).cloned() {
            annotations.insert("title".into(), summary);
        }
        let mut a = Alert { labels, annotations, starts_at, ends_at: None, instance: String::new(), one_shot: false };
        a.instance = format!("{}@{}", a.fingerprint(), starts_at.timestamp());
        a
    }

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
        let labels = asset_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut alert = Alert::violation(
            Violation {
                id: &t.violation_id,
                asset_id: &e.asset_id,
                control_id: &e.control_id,
                title: &e.title,
                severity: e.severity.as_str(),
                frameworks: &e.frameworks.ids,
                evidence: &e.evidence,
                message: e.message.as_deref(),
                at: e.evaluated_at,
            },
            labels,
        );
        if t.kind == TransitionKind::Resolved {
            // The start is not known here; receivers use the instance id.
            alert.ends_at = Some(e.evaluated_at);
        }
        alert
    }

    /// The firing alert of a violation, opened at `v.at`: the one
    /// constructor of the engine's live alerts and of those restored from
    /// the store after a restart, so both have the same labels (fingerprint,
    /// group) and a restart neither resolves nor re-pages a violation.
    /// `labels` are the asset's own; the violation's labels override them.
    pub fn violation(v: Violation<'_>, labels: Labels) -> Alert {
        let mut labels = labels;
        labels.insert("alertname".into(), "violation".into());
        labels.insert("asset".into(), v.asset_id.into());
        labels.insert("control".into(), v.control_id.into());
        labels.insert("severity".into(), v.severity.into());
        labels.insert("frameworks".into(), frameworks_label(v.frameworks));
        let mut annotations = BTreeMap::new();
        annotations.insert("title".into(), v.title.into());
        annotations.insert("summary".into(), format!("{} on {}", v.title, v.asset_id));
        annotations.insert("evidence".into(), evidence_text(v.evidence));
        if let Some(m) = v.message {
            annotations.insert("message".into(), m.into());
        }
        Alert { labels, annotations, starts_at: v.at, ends_at: None, instance: v.id.into(), one_shot: false }
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
        labels.insert("frameworks".into(), frameworks_label(&e.frameworks.ids));
        let mut annotations = BTreeMap::new();
        annotations.insert("title".into(), e.title.clone());
        annotations.insert("summary".into(), format!("{}: {} → {} on {}", e.title, d.from.as_str(), e.status.as_str(), e.asset_id));
        let diff: Vec<String> = d.changed.iter().map(|p| change_text(p, d.before.get(p), e.evidence.get(p))).collect();
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

impl Alert {
    /// The firing alert of an open violation, rebuilt from its stored row
    /// (evidence as the row's JSON): [`Alert::violation`], as the engine
    /// made it.
    pub fn reopened(v: OpenViolation) -> Alert {
        let evidence: BTreeMap<String, FactValue> = serde_json::from_str(&v.evidence).unwrap_or_default();
        let violation = Violation {
            id: &v.violation_id,
            asset_id: &v.asset_id,
            control_id: &v.control_id,
            title: &v.title,
            severity: &v.severity,
            frameworks: &v.frameworks,
            evidence: &evidence,
            message: None,
            at: v.opened_at,
        };
        Alert::violation(violation, v.labels)
    }
}

/// What a violation's alert is made of (see [`Alert::violation`]).
pub struct Violation<'a> {
    /// The violation id: the alert's instance.
    pub id: &'a str,
    pub asset_id: &'a str,
    pub control_id: &'a str,
    pub title: &'a str,
    pub severity: &'a str,
    /// `framework:id`s, in any order.
    pub frameworks: &'a [String],
    pub evidence: &'a BTreeMap<String, FactValue>,
    pub message: Option<&'a str>,
    /// When the violation opened.
    pub at: DateTime<Utc>,
}

/// The `frameworks` label: `framework:id`s sorted, so the label (and the
/// alert's fingerprint and group) is the same whether the ids come from a
/// pack (in its order) or from a stored violation after a restart.
fn frameworks_label(ids: &[String]) -> String {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.join(",")
}

/// The `evidence` annotation: one `path = value` line per fact.
fn evidence_text(e: &BTreeMap<String, FactValue>) -> String {
    e.iter().map(|(k, v)| format!("{k} = {}", shown(Some(v)))).collect::<Vec<_>>().join("\n")
}

/// Items of a list an alert shows (a package list holds hundreds); the
/// stored evaluation and drift event keep them all.
const SHOWN_ITEMS: usize = 10;

/// A fact value as an alert shows it: JSON, a long list cut after
/// [`SHOWN_ITEMS`] items with how many more it holds.
fn shown(v: Option<&FactValue>) -> String {
    match v {
        None => "null".into(),
        Some(FactValue::List(l)) => list_text(l.iter()),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn list_text<'a>(items: impl ExactSizeIterator<Item = &'a String>) -> String {
    let n = items.len();
    let head: Vec<String> = items.take(SHOWN_ITEMS).map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    let more = if n > SHOWN_ITEMS { format!(", … {} more", n - SHOWN_ITEMS) } else { String::new() };
    format!("[{}{more}]", head.join(","))
}

/// One changed fact of a drift: `path: before → after`; a list that
/// gained or lost items shows just those (`path: +["telnetd"] −["aide"]`).
fn change_text(path: &str, before: Option<&FactValue>, after: Option<&FactValue>) -> String {
    if let (Some(FactValue::List(b)), Some(FactValue::List(a))) = (before, after) {
        let (old, new): (std::collections::HashSet<&String>, std::collections::HashSet<&String>) = (b.iter().collect(), a.iter().collect());
        let added: Vec<&String> = a.iter().filter(|x| !old.contains(x)).collect();
        let removed: Vec<&String> = b.iter().filter(|x| !new.contains(x)).collect();
        if !added.is_empty() || !removed.is_empty() {
            let part = |sign: &str, items: Vec<&String>| (!items.is_empty()).then(|| format!("{sign}{}", list_text(items.into_iter())));
            return format!("{path}: {}", [part("+", added), part("−", removed)].into_iter().flatten().collect::<Vec<_>>().join(" "));
        }
    }
    format!("{path}: {} → {}", shown(before), shown(after))
}

/// A hash of a label set, hex; the same labels give the same fingerprint.
pub fn fingerprint(labels: &Labels) -> String {
    fingerprint_of(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// [`fingerprint`] of label pairs given in name order, without copying
/// them into a map.
pub fn fingerprint_of<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: impl IntoIterator<Item = String>) -> FactValue {
        FactValue::List(items.into_iter().collect())
    }

    #[test]
    fn long_lists_are_cut_in_alerts() {
        let packages = list((0..300).map(|i| format!("p{i}")));
        let text = evidence_text(&BTreeMap::from([("packages.installed".to_string(), packages)]));
        assert_eq!(text, r#"packages.installed = ["p0","p1","p2","p3","p4","p5","p6","p7","p8","p9", … 290 more]"#);
        assert_eq!(shown(Some(&list(["a".to_string()]))), r#"["a"]"#);
        assert_eq!(shown(Some(&FactValue::Int(3))), "3");
    }

    #[test]
    fn a_changed_list_shows_what_it_gained_and_lost() {
        let before = list(["aide", "openssh-server"].map(String::from));
        let after = list(["openssh-server", "telnetd"].map(String::from));
        assert_eq!(change_text("packages.installed", Some(&before), Some(&after)), r#"packages.installed: +["telnetd"] −["aide"]"#);
        let grown = list(["aide", "openssh-server", "x"].map(String::from));
        assert_eq!(change_text("p", Some(&before), Some(&grown)), r#"p: +["x"]"#);
        // Reordered only, and scalars: before → after.
        let reordered = list(["openssh-server", "aide"].map(String::from));
        assert_eq!(change_text("p", Some(&before), Some(&reordered)), r#"p: ["aide","openssh-server"] → ["openssh-server","aide"]"#);
        assert_eq!(change_text("sshd.config.permitrootlogin", Some(&"no".into()), None), r#"sshd.config.permitrootlogin: "no" → null"#);
    }
}

#[cfg(test)]
mod restored_tests {
    use super::*;
    use crate::eval::Engine;
    use crate::policy::PolicySet;
    use crate::store::alerting::OpenViolation;
    use driftwatch_schemas::{Asset, AssetKind, ConfigSnapshot, Fact, SnapshotKind};
    use std::sync::Arc;

    /// A violation's alert restored from its stored row is the alert the
    /// engine raised: same labels (fingerprint, group) and evidence text,
    /// also for a control whose requirement ids are not in sorted order.
    #[test]
    fn a_restored_violation_alert_is_the_live_one() {
        let text = r#"pack: t
controls:
  - id: root
    title: root login off
    severity: high
    check: sshd.config.permitrootlogin == "no" && !("telnetd" in packages.installed)
    frameworks: {soc2: [CC6.1], pci-dss: ["2.2.6", "10.2.1"]}
"#;
        let policies = Arc::new(PolicySet::new(crate::policy::load_text(std::path::Path::new("t.yaml"), text).unwrap()));
        let mut engine = Engine::new(policies, chrono::Duration::minutes(10));
        let labels = std::collections::BTreeMap::from([("team".to_string(), "web".to_string())]);
        let packages = driftwatch_schemas::FactValue::List((0..40).map(|i| format!("p{i}")).chain(["telnetd".into()]).collect());
        let applied = engine.apply(&ConfigSnapshot {
            asset: Asset { id: "a".into(), kind: AssetKind::Host, hostname: "h".into(), labels: labels.clone() },
            agent_id: "ag".into(),
            agent_version: "0".into(),
            snapshot_id: "s1".into(),
            sequence: 1,
            collected_at: chrono::Utc::now(),
            kind: SnapshotKind::Full,
            facts: vec![
                Fact { path: "sshd.config.permitrootlogin".into(), value: "yes".into() },
                Fact { path: "packages.installed".into(), value: packages },
            ],
            removed_paths: vec![],
        });
        let t = &applied.transitions[0];
        let live = Alert::from_transition(t, &t.asset_labels);
        let row = crate::eval::rows::violation_row(t, "b");
        let restored = Alert::reopened(OpenViolation {
            violation_id: row.violation_id,
            asset_id: row.asset_id,
            control_id: row.control_id,
            title: row.title,
            severity: row.severity,
            frameworks: row.frameworks,
            evidence: row.evidence,
            opened_at: t.evaluation.evaluated_at,
            labels,
        });
        assert_eq!(restored.labels, live.labels);
        assert_eq!(restored.fingerprint(), live.fingerprint());
        assert_eq!(restored.annotations, live.annotations);
        assert_eq!(live.labels["frameworks"], "pci-dss:10.2.1,pci-dss:2.2.6,soc2:CC6.1");
    }
}
