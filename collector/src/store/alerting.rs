//! What alerting keeps: the notification log, silences, the API's write
//! audit, and the open violations a (re)started collector alerts from.

use async_trait::async_trait;

use super::StoreError;
use crate::alert::dispatch::Sent;
use crate::alert::model::Alert;
use crate::alert::mute::Silence;

/// Alerting's durable state.
#[async_trait]
pub trait AlertLog {
    /// Records delivered notifications (each with its status: `firing`,
    /// `resolved`), in one write.
    async fn record_notifications(&self, sent: &[(Sent, &str)]) -> Result<(), StoreError>;

    /// The last notification of every (receiver, group).
    async fn notification_log(&self) -> Result<Vec<Sent>, StoreError>;

    /// The last notification of the groups `keys`.
    async fn notification_log_for(&self, keys: &[String]) -> Result<Vec<Sent>, StoreError>;

    /// Silences not yet ended. A stored matcher that no longer parses is
    /// skipped with an error log (the silence then mutes nothing).
    async fn silences(&self) -> Result<Vec<Silence>, StoreError>;

    /// Creates or updates a silence (the latest version wins).
    async fn put_silence(&self, s: &Silence) -> Result<(), StoreError>;

    /// Records a write through the API (who, what, when, outcome).
    async fn record_api_write(&self, key: &str, method: &str, path: &str, status: u16, detail: &str) -> Result<(), StoreError>;

    /// Firing alerts for every open violation.
    async fn open_violation_alerts(&self) -> Result<Vec<Alert>, StoreError>;
}

/// The alert of an open violation (labels and annotations as the engine's
/// violation alerts carry them), for either store.
#[allow(clippy::too_many_arguments)]
pub(crate) fn violation_alert(
    violation_id: String,
    asset_id: String,
    control_id: String,
    title: String,
    severity: String,
    frameworks: Vec<String>,
    evidence: &str,
    opened_at: chrono::DateTime<chrono::Utc>,
    labels: crate::alert::matcher::Labels,
) -> Alert {
    use crate::alert::model::{evidence_text, frameworks_label};
    use std::collections::BTreeMap;
    // Labels and annotations as the live alert had them (`Alert::from_transition`):
    // the same fingerprint and group, so a restart neither resolves nor re-pages it.
    let mut labels = labels;
    labels.insert("alertname".into(), "violation".into());
    labels.insert("asset".into(), asset_id.clone());
    labels.insert("control".into(), control_id);
    labels.insert("severity".into(), severity);
    labels.insert("frameworks".into(), frameworks_label(&frameworks));
    let evidence: BTreeMap<String, driftwatch_schemas::FactValue> = serde_json::from_str(evidence).unwrap_or_default();
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), format!("{title} on {asset_id}"));
    annotations.insert("title".into(), title);
    annotations.insert("evidence".into(), evidence_text(&evidence));
    Alert { labels, annotations, starts_at: opened_at, ends_at: None, instance: violation_id, one_shot: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Engine;
    use crate::policy::PolicySet;
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
        let row = crate::store::rows::violation_row(t, "b");
        let restored = violation_alert(
            row.violation_id,
            row.asset_id,
            row.control_id,
            row.title,
            row.severity,
            row.frameworks,
            &row.evidence,
            t.evaluation.evaluated_at,
            labels.into_iter().collect(),
        );
        assert_eq!(restored.labels, live.labels);
        assert_eq!(restored.fingerprint(), live.fingerprint());
        assert_eq!(restored.annotations, live.annotations);
        assert_eq!(live.labels["frameworks"], "pci-dss:10.2.1,pci-dss:2.2.6,soc2:CC6.1");
    }
}
