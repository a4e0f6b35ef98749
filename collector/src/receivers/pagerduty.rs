//! PagerDuty Events API v2: a group that fires is an incident (`trigger`),
//! keyed by a stable `dedup_key` derived from the group (so re-sends update
//! the same incident and a restart doesn't open a second one), and the
//! group's resolution resolves it (`resolve`). PagerDuty answers 202 with
//! `{"status":"success"}`, 400 for an invalid event (not retried), 429 and
//! 5xx (retried).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{HttpKind, Notification};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration's 32-character routing key.
    pub routing_key: String,
    #[serde(default = "default_url")]
    pub url: String,
}

/// Without the credential (the URL's path, the key, the secret).
impl std::fmt::Debug for PagerDutyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyConfig").field("routing_key", &"[REDACTED]").field("url", &super::url_origin(&self.url)).finish()
    }
}

fn default_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

pub struct PagerDuty {
    routing_key: String,
    url: String,
}

impl PagerDuty {
    pub fn new(cfg: &PagerDutyConfig) -> Self {
        PagerDuty { routing_key: cfg.routing_key.clone(), url: cfg.url.clone() }
    }
}

impl HttpKind for PagerDuty {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder {
        client.post(&self.url).json(&event(&self.routing_key, n))
    }
}

/// PagerDuty's severities: critical, error, warning, info.
pub fn severity(s: &str) -> &'static str {
    match s {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

/// Stable per alert group and receiver (and apart for escalations).
pub fn dedup_key(n: &Notification) -> String {
    format!("driftwatch/{}/{}{}", n.receiver, n.group_key, if n.escalation { "/escalation" } else { "" })
}

/// The event body.
pub fn event(routing_key: &str, n: &Notification) -> Value {
    let key = dedup_key(n);
    if n.status() == "resolved" {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": key});
    }
    let first = &n.firing[0];
    let details: Vec<Value> = n
        .firing
        .iter()
        .take(20)
        .map(|a| {
            json!({
                "labels": a.labels,
                "summary": a.annotations.get("summary"),
                "diff": a.annotations.get("diff"),
                "cause": a.annotations.get("cause"),
                "remediation": a.annotations.get("remediation"),
                "control_url": n.control_link(a),
                "since": a.starts_at.to_rfc3339(),
            })
        })
        .collect();
    let summary: String = n.title().chars().take(1024).collect();
    let mut e = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "Driftwatch",
        "payload": {
            "summary": summary,
            "source": first.labels.get("asset").cloned().unwrap_or_else(|| "driftwatch".into()),
            "severity": severity(n.severity()),
            "timestamp": first.starts_at.to_rfc3339(),
            "component": first.labels.get("control").or(first.labels.get("service")).cloned().unwrap_or_default(),
            "group": first.labels.get("team").cloned().unwrap_or_default(),
            "class": first.labels.get("alertname").cloned().unwrap_or_default(),
            "custom_details": {
                "firing": n.firing.len(),
                "group": n.group_labels,
                "requirements": first.labels.get("frameworks"),
                "alerts": details,
            },
        },
    });
    let mut links = Vec::new();
    if let Some(link) = n.link() {
        e["client_url"] = json!(link.clone());
        links.push(json!({"href": link, "text": "Open in Driftwatch"}));
    }
    if let Some(link) = n.control_link(first) {
        links.push(json!({"href": link, "text": "The control and how to fix it"}));
    }
    if !links.is_empty() {
        e["links"] = json!(links);
    }
    if let Some(fix) = first.annotations.get("remediation") {
        e["payload"]["custom_details"]["remediation"] = json!(fix);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notification::tests::{alert, notification};

    #[test]
    fn trigger_and_resolve_share_the_dedup_key() {
        let t = event("k", &notification(vec![alert("web-1", "high", false)], vec![]));
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["payload"]["severity"], "error");
        assert_eq!(t["payload"]["source"], "web-1");
        assert!(t["payload"]["summary"].as_str().unwrap().len() <= 1024);
        assert_eq!(t["payload"]["custom_details"]["requirements"], "soc2:CC6.1");
        assert_eq!(t["payload"]["custom_details"]["remediation"], "Set `PermitRootLogin no` and reload sshd.");
        assert_eq!(t["links"][1]["href"], "http://127.0.0.1:8080/controls/linux.sshd.root_login_disabled");
        let r = event("k", &notification(vec![], vec![alert("web-1", "high", true)]));
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert!(r.get("payload").is_none());
    }
}
