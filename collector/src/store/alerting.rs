//! What alerting keeps: the notification log, silences, the API's write
//! audit, and the open violations a (re)started collector alerts from.

use async_trait::async_trait;

use super::StoreError;
use crate::alert::dispatch::Sent;
use crate::alert::model::{Alert, Violation};
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

/// The alert of an open violation from its stored row (evidence as the
/// row's JSON), for either store: [`Alert::violation`], as the engine made it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn violation_alert(
    violation_id: &str,
    asset_id: &str,
    control_id: &str,
    title: &str,
    severity: &str,
    frameworks: &[String],
    evidence: &str,
    opened_at: chrono::DateTime<chrono::Utc>,
    labels: crate::alert::matcher::Labels,
) -> Alert {
    let evidence: std::collections::BTreeMap<String, driftwatch_schemas::FactValue> = serde_json::from_str(evidence).unwrap_or_default();
    let v = Violation {
        id: violation_id,
        asset_id,
        control_id,
        title,
        severity,
        frameworks,
        evidence: &evidence,
        message: None,
        at: opened_at,
    };
    Alert::violation(v, labels)
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
            &row.violation_id,
            &row.asset_id,
            &row.control_id,
            &row.title,
            &row.severity,
            &row.frameworks,
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
