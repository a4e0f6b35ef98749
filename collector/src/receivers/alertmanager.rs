//! Prometheus Alertmanager (API v2): a notification's alerts posted to
//! `<url>/api/v2/alerts`, so that an organisation's own Alertmanager
//! groups, routes, silences and inhibits Driftwatch's alerts beside every
//! other. Each alert carries its labels, its annotations, `startsAt` and a
//! `generatorURL` (its asset's page, else its control's). Alertmanager
//! ends an alert that is not posted again before its `endsAt`, as it does
//! for Prometheus: a firing alert is posted with `endsAt` = now + `hold`,
//! and posted again with each repeat of its group (the route's
//! `repeat_interval`, which must be shorter than `hold`: checked at
//! start); a resolved one with its resolution time. A drift event, which
//! is a point in time and never resolves, is shown as firing for `hold`
//! and then ends. Alertmanager answers
//! 200, 400 for alerts it refuses (not retried) and 5xx (retried).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{HttpKind, Notification};
use crate::alert::model::Alert;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093` (a path
    /// prefix, as behind a proxy, is kept).
    pub url: String,
    /// How long Alertmanager holds a firing alert that is not posted again
    /// (its `endsAt`), e.g. `1h` (the default); the routes to this
    /// receiver repeat sooner.
    #[serde(default)]
    pub hold: Option<String>,
}

impl AlertmanagerConfig {
    /// `hold` as a duration.
    pub fn hold(&self) -> Result<Duration, String> {
        match &self.hold {
            None => Ok(Duration::from_secs(3600)),
            Some(text) => crate::alert::route::parse_duration("hold", text),
        }
    }
}

/// Without the URL's path or credentials.
impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig").field("url", &super::url_origin(&self.url)).field("hold", &self.hold).finish()
    }
}

pub struct Alertmanager {
    endpoint: String,
    hold: chrono::Duration,
}

impl Alertmanager {
    pub fn new(cfg: &AlertmanagerConfig) -> Self {
        Alertmanager {
            endpoint: format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/')),
            // Checked at start (`ReceiverConfig::validate`).
            hold: cfg.hold().ok().and_then(|d| chrono::Duration::from_std(d).ok()).unwrap_or(chrono::Duration::hours(1)),
        }
    }
}

impl HttpKind for Alertmanager {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder {
        client.post(&self.endpoint).json(&alerts(n, Utc::now(), self.hold))
    }
}

/// The postable alerts of `n` at `now`.
pub fn alerts(n: &Notification, now: DateTime<Utc>, hold: chrono::Duration) -> Value {
    let one = |a: &Alert, ends_at: DateTime<Utc>| {
        let generator = n.page_of(a).unwrap_or_else(|| n.external_url.clone());
        json!({
            "labels": names_of(a.labels.iter()),
            "annotations": names_of(a.annotations.iter()),
            "startsAt": a.starts_at.to_rfc3339(),
            // Never before it started (a clock's step back).
            "endsAt": ends_at.max(a.starts_at).to_rfc3339(),
            "generatorURL": generator,
        })
    };
    let firing = n.firing.iter().map(|a| one(a, now + hold));
    let resolved = n.resolved.iter().map(|a| one(a, a.ends_at.unwrap_or(now)));
    Value::Array(firing.chain(resolved).collect())
}

/// Labels (or annotations) under names Alertmanager takes
/// (`[a-zA-Z_][a-zA-Z0-9_]*`): an asset label such as
/// `app.kubernetes.io/name` becomes `app_kubernetes_io_name`, as
/// Prometheus's relabelling would write it; an empty value is left out
/// (Alertmanager treats it as absent).
fn names_of<'a>(entries: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    let mut out = Map::new();
    for (k, v) in entries.filter(|(_, v)| !v.is_empty()) {
        let mut name: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            name.insert(0, '_');
        }
        // The first of two names that end up alike wins: the order is the
        // labels' own (sorted), so it is the same on every post.
        out.entry(name).or_insert_with(|| Value::String(v.clone()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::matcher::Labels;

    fn alert(labels: &[(&str, &str)], starts: DateTime<Utc>, ends: Option<DateTime<Utc>>) -> Alert {
        let labels: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut a = Alert::condition(labels, [("summary".to_string(), "s".to_string())].into(), starts);
        a.ends_at = ends;
        a
    }

    #[test]
    fn firing_alerts_hold_for_a_while_and_resolved_ones_end() {
        let t0 = "2026-12-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let now = t0 + chrono::Duration::minutes(5);
        let firing = alert(&[("alertname", "violation"), ("asset", "web 1"), ("app.kubernetes.io/name", "x"), ("9lives", "y")], t0, None);
        let resolved = alert(&[("alertname", "violation"), ("asset", "db-1"), ("empty", "")], t0, Some(now));
        let n = Notification {
            receiver: "am".into(),
            group_key: "g".into(),
            group_labels: Labels::new(),
            firing: vec![firing],
            resolved: vec![resolved],
            escalation: false,
            external_url: "http://driftwatch.example".into(),
        };
        let body = alerts(&n, now, chrono::Duration::hours(1));
        let posted = body.as_array().unwrap();
        assert_eq!(posted.len(), 2);
        assert_eq!(posted[0]["endsAt"], "2026-12-01T11:05:00+00:00", "held an hour from now");
        assert_eq!(posted[0]["startsAt"], "2026-12-01T10:00:00+00:00");
        assert_eq!(posted[0]["labels"]["app_kubernetes_io_name"], "x");
        assert_eq!(posted[0]["labels"]["_9lives"], "y");
        assert_eq!(posted[0]["annotations"]["summary"], "s");
        assert_eq!(posted[0]["generatorURL"], "http://driftwatch.example/assets/web%201");
        assert_eq!(posted[1]["endsAt"], "2026-12-01T10:05:00+00:00", "resolved when it was");
        assert!(posted[1]["labels"].get("empty").is_none());
    }
}
