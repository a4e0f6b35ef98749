//! The alerting task's settings (the `alerts` section): receivers, the
//! routing tree, inhibition and maintenance windows; validated at start.

use serde::Deserialize;

use crate::alert::mute::{InhibitRule, MaintenanceWindow};
use crate::alert::route::{Route, RouteConfig};
use crate::receivers::ReceiverConfig;

/// Alerting: receivers, the routing tree, inhibition and maintenance
/// windows (silences live in the store; see `driftwatch-collector silence`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Base URL of the collector's UI, for links in notifications.
    pub external_url: String,
    /// Drift events of at least this severity become alerts (`null`: none).
    pub drift_min_severity: Option<crate::policy::Severity>,
    pub receivers: Vec<ReceiverConfig>,
    /// The routing tree; without one, every receiver gets every alert.
    pub route: Option<RouteConfig>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// How often silences are re-read from the store.
    pub silence_refresh_secs: u64,
    /// Alerts on a framework's fleet score below a floor or falling fast
    /// (`posture: {}` turns them on with their defaults; absent: off).
    pub posture: Option<crate::score::posture::PostureAlerts>,
    /// Reminders as a gap's due date nears and once it is overdue
    /// (`gaps: {}` turns them on with their defaults; absent: off).
    pub gaps: Option<crate::score::tracking::GapReminders>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            external_url: "http://127.0.0.1:8080".into(),
            drift_min_severity: Some(crate::policy::Severity::High),
            receivers: Vec::new(),
            route: None,
            inhibit_rules: Vec::new(),
            maintenance_windows: Vec::new(),
            silence_refresh_secs: 10,
            posture: None,
            gaps: None,
        }
    }
}

impl AlertsConfig {
    /// The routing tree: the configured one, or one that sends every alert
    /// to every receiver (grouped by asset).
    pub fn route_config(&self) -> Option<RouteConfig> {
        if let Some(r) = &self.route {
            return Some(r.clone());
        }
        let (first, rest) = self.receivers.split_first()?;
        Some(RouteConfig {
            receiver: Some(first.name.clone()),
            group_by: Some(vec!["asset".into()]),
            routes: rest
                .iter()
                .map(|r| RouteConfig { receiver: Some(r.name.clone()), continue_matching: true, ..Default::default() })
                .collect(),
            ..Default::default()
        })
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            problems.extend(r.validate(&format!("alerts.receivers[{i}]")));
            if !names.insert(r.name.clone()) {
                problems.push(format!("alerts.receivers[{i}].name: {:?} is used twice", r.name));
            }
        }
        if let Some(route) = self.route_config() {
            let names: Vec<String> = names.into_iter().collect();
            if let Err(errors) = Route::compile(&route, &names) {
                problems.extend(errors);
            }
        } else if self.route.is_some() {
            problems.push("alerts.route: no receivers are configured".into());
        }
        for (i, w) in self.maintenance_windows.iter().enumerate() {
            problems.extend(w.validate(&format!("alerts.maintenance_windows[{i}]")));
        }
        if reqwest::Url::parse(&self.external_url).is_err() {
            problems.push(format!("alerts.external_url: {:?} is not a URL", self.external_url));
        }
        if self.silence_refresh_secs == 0 {
            problems.push("alerts.silence_refresh_secs: must be at least 1".into());
        }
        if let Some(p) = &self.posture {
            p.validate(problems);
        }
        if let Some(g) = &self.gaps {
            g.validate(problems);
        }
    }
}
