//! What the SLO task ([`crate::tasks::slo`]) alerts on, and its settings:
//! every `slo.interval_secs` it refreshes the minute rollups of the recent
//! past, computes every SLO's status, and turns conditions into alerts — a burn-rate rule holding (`slo_burn`, page or ticket), the
//! SLA missed over its window (`sla_breach`, with the credit due), a probe
//! with no data (`probe_no_data`), an asset gone silent (`asset_silent`).
//! A condition that stops holding is resolved.
//!
//! Only the collector that owns partition 0 of the SLA topic runs it, so a
//! group of collectors raises each condition once. After a restart the
//! conditions it had notified (from the notification log) are its starting
//! point, so it neither re-pages nor forgets to resolve.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{SloConfig, Status};
use crate::alert::matcher::Labels;
use crate::alert::model::Alert;

/// Alert names this task owns.
pub const ALERTNAMES: [&str; 4] = ["slo_burn", "sla_breach", "probe_no_data", "asset_silent"];

/// The `slo` section of the collector configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloSettings {
    pub objectives: Vec<SloConfig>,
    /// How often SLOs are computed.
    pub interval_secs: u64,
    /// A probe of an SLO without results this long is `probe_no_data`.
    pub no_data_after_secs: u64,
    /// An asset without snapshots or probe results this long is
    /// `asset_silent` (0: off).
    pub silent_after_secs: u64,
}

impl Default for SloSettings {
    fn default() -> Self {
        SloSettings { objectives: Vec::new(), interval_secs: 30, no_data_after_secs: 600, silent_after_secs: 1800 }
    }
}

impl SloSettings {
    pub fn validate(&self, problems: &mut Vec<String>) {
        for (i, s) in self.objectives.iter().enumerate() {
            problems.extend(s.validate(&format!("slo.objectives[{i}]")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.objectives.iter().enumerate() {
            if !seen.insert((s.service.clone(), format!("{:?}", s.sli.kind))) {
                problems.push(format!("slo.objectives[{i}]: a second {:?} SLO for service {:?}", s.sli.kind, s.service));
            }
        }
        if self.interval_secs == 0 {
            problems.push("slo.interval_secs: must be at least 1".into());
        }
    }
}

fn alert(
    name: &str,
    severity: &str,
    extra: &[(&str, String)],
    summary: String,
    annotations: &[(&str, String)],
    now: DateTime<Utc>,
) -> Alert {
    let mut labels = Labels::new();
    labels.insert("alertname".into(), name.into());
    labels.insert("severity".into(), severity.into());
    for (k, v) in extra {
        labels.insert((*k).to_string(), v.clone());
    }
    let mut ann = BTreeMap::new();
    ann.insert("summary".to_string(), summary.clone());
    ann.insert("title".to_string(), summary);
    for (k, v) in annotations {
        ann.insert((*k).to_string(), v.clone());
    }
    let mut a = Alert { labels, annotations: ann, starts_at: now, ends_at: None, instance: String::new(), one_shot: false };
    a.instance = format!("{}@{}", a.fingerprint(), now.timestamp());
    a
}

/// The conditions that hold now, as alerts.
pub fn conditions(
    statuses: &[(SloConfig, Status)],
    probes_seen: &HashMap<String, DateTime<Utc>>,
    assets_seen: &[(String, DateTime<Utc>)],
    settings: &SloSettings,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let mut out = Vec::new();
    for (slo, st) in statuses {
        let base: Vec<(&str, String)> = std::iter::once(("service", slo.service.clone()))
            .chain(std::iter::once(("sli", format!("{:?}", slo.sli.kind).to_lowercase())))
            .chain(slo.labels.iter().map(|(k, v)| (k.as_str(), v.clone())))
            .collect();
        for (window, action) in &st.burning {
            let mut labels = base.clone();
            labels.push(("window", window.clone()));
            labels.push(("action", action.to_string()));
            let rate = window.split('/').next().and_then(|w| st.burn_rates.get(w)).copied().flatten().unwrap_or_default();
            out.push(alert(
                "slo_burn",
                if *action == "page" { "critical" } else { "medium" },
                &labels,
                format!("{} is burning its {}% error budget {:.1}× too fast ({window})", slo.service, slo.objective, rate),
                &[
                    ("budget_remaining", st.budget_remaining.map(|b| format!("{:.1}%", b * 100.0)).unwrap_or_else(|| "unknown".into())),
                    ("sli", st.sli.map(|s| format!("{s:.3}%")).unwrap_or_else(|| "no data".into())),
                ],
                now,
            ));
        }
        if st.sla_breached {
            let sla = slo.sla.as_ref().map(|s| s.objective).unwrap_or_default();
            out.push(alert(
                "sla_breach",
                "high",
                &base,
                format!("{} missed its SLA: {:.3}% < {sla}% over {}", slo.service, st.sli.unwrap_or_default(), slo.window),
                &[("credit_due", st.credit_due.map(|c| format!("{c}%")).unwrap_or_else(|| "none".into()))],
                now,
            ));
        }
        for p in &slo.sli.probes {
            let stale = probes_seen.get(p).is_none_or(|t| now - *t > chrono::Duration::seconds(settings.no_data_after_secs as i64));
            if stale {
                let mut labels = base.clone();
                labels.push(("probe", p.clone()));
                out.push(alert(
                    "probe_no_data",
                    "medium",
                    &labels,
                    format!("probe {p} of {} has reported nothing for {}s", slo.service, settings.no_data_after_secs),
                    &[],
                    now,
                ));
            }
        }
    }
    if settings.silent_after_secs > 0 {
        for (asset, seen) in assets_seen {
            if now - *seen > chrono::Duration::seconds(settings.silent_after_secs as i64) {
                out.push(alert(
                    "asset_silent",
                    "high",
                    &[("asset", asset.clone())],
                    format!("{asset} has sent nothing since {}", seen.to_rfc3339()),
                    &[],
                    now,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_become_labelled_alerts() {
        let slo: SloConfig = serde_yaml::from_str(
            "service: web\nsli: {kind: availability, probes: [web, api]}\nobjective: 99.9\nsla: {objective: 99.5, credits: [{below: 99.5, credit: 10}]}\nlabels: {team: web}",
        )
        .unwrap();
        let now = Utc::now();
        let minutes: Vec<super::super::Minute> =
            (0..120).map(|i| super::super::Minute { at: now - chrono::Duration::minutes(i), total: 10, good: 5 }).collect();
        let st = Status::compute(&slo, &minutes, now);
        let seen: HashMap<String, DateTime<Utc>> = [("web".to_string(), now)].into();
        let assets = vec![("h1".to_string(), now - chrono::Duration::hours(2)), ("h2".to_string(), now)];
        let a = conditions(&[(slo, st)], &seen, &assets, &SloSettings::default(), now);
        let names: Vec<(&str, Option<&str>)> =
            a.iter().map(|a| (a.labels["alertname"].as_str(), a.labels.get("window").map(String::as_str))).collect();
        assert!(names.contains(&("slo_burn", Some("1h/5m"))), "{names:?}");
        assert!(names.contains(&("sla_breach", None)));
        let breach = a.iter().find(|a| a.labels["alertname"] == "sla_breach").unwrap();
        assert_eq!(breach.annotations["credit_due"], "10%");
        assert_eq!(breach.labels["team"], "web");
        assert!(a.iter().any(|a| a.labels["alertname"] == "probe_no_data" && a.labels["probe"] == "api"), "api never reported");
        assert!(a.iter().any(|a| a.labels["alertname"] == "asset_silent" && a.labels["asset"] == "h1"));
        assert!(!a.iter().any(|a| a.labels.get("asset").is_some_and(|x| x == "h2")));
        let page = a.iter().find(|a| a.labels.get("window").is_some_and(|w| w == "1h/5m")).unwrap();
        assert_eq!((page.severity(), page.labels["action"].as_str()), ("critical", "page"));
    }
}
