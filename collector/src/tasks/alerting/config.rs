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

    /// Alertmanager ends a firing alert that is not posted again within
    /// its receiver's `hold`: every route to one must repeat sooner, and
    /// none may escalate to one (an escalation is sent once).
    fn check_alertmanager_routes(&self, tree: &Route, problems: &mut Vec<String>) {
        let held =
            |name: &str| self.receivers.iter().find(|r| r.name == name).and_then(|r| r.alertmanager.as_ref()).and_then(|a| a.hold().ok());
        for route in tree.walk() {
            if let Some(hold) = held(&route.receiver) {
                if route.repeat_interval >= hold {
                    problems.push(format!(
                        "alerts.route: the route to {:?} (an alertmanager receiver) repeats every {}, not sooner than its hold of {}: Alertmanager would end its alerts between posts; set repeat_interval below hold",
                        route.receiver,
                        humantime::format_duration(route.repeat_interval),
                        humantime::format_duration(hold)
                    ));
                }
            }
            if let Some((_, to)) = route.escalate.as_ref().filter(|(_, to)| held(to).is_some()) {
                problems.push(format!(
                    "alerts.route: escalates to {to:?}, an alertmanager receiver; escalations are sent once, so Alertmanager would end them: escalate with Alertmanager's own routes"
                ));
            }
        }
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
            match Route::compile(&route, &names) {
                Err(errors) => problems.extend(errors),
                Ok(tree) => self.check_alertmanager_routes(&tree, problems),
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
