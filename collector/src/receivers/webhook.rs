//! Generic JSON webhook: the notification in Alertmanager's webhook shape
//! (`version` 4: `status`, `groupKey`, `groupLabels`, `commonLabels`,
//! `alerts` with `labels`, `annotations`, `startsAt`, `endsAt`,
//! `fingerprint`). With a `secret`, each request carries
//! `X-Driftwatch-Timestamp` (Unix seconds) and `X-Driftwatch-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, so a receiver can
//! verify it and reject replays.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{HttpKind, Notification, Scheduled};
use crate::alert::matcher::Labels;
use crate::alert::model::Alert;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Shared secret for the signature header; never logged.
    pub secret: Option<String>,
}

/// Without the credential (the URL's path, the key, the secret).
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &super::url_origin(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

pub struct Webhook {
    url: String,
    secret: Option<String>,
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig) -> Self {
        Webhook { url: cfg.url.clone(), secret: cfg.secret.clone() }
    }

    /// A JSON POST of `body`, signed when there is a secret.
    fn post(&self, client: &reqwest::Client, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut req = client.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let ts = chrono::Utc::now().timestamp().to_string();
            req = req.header("X-Driftwatch-Timestamp", &ts).header("X-Driftwatch-Signature", signature(secret, &ts, &body));
        }
        req.body(body)
    }
}

impl HttpKind for Webhook {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder {
        self.post(client, serde_json::to_vec(&body(n)).unwrap_or_default())
    }

    /// A scheduled report: `{"kind": "report", "schedule", "subject",
    /// "text", "report"}` (the report as JSON), signed like an alert.
    fn report_request(&self, client: &reqwest::Client, r: &Scheduled) -> Option<reqwest::RequestBuilder> {
        let body = serde_json::json!({
            "version": "1",
            "kind": "report",
            "schedule": r.schedule,
            "subject": r.subject,
            "text": r.text,
            "report": r.json,
        });
        Some(self.post(client, serde_json::to_vec(&body).unwrap_or_default()))
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), &[timestamp.as_bytes(), b".", body]))
}

fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The request body, written straight from the notification (no JSON
/// tree built first: a storm sends tens of thousands).
pub fn body<'a>(n: &'a Notification) -> Body<'a> {
    let alert = |a: &'a Alert| -> AlertBody<'a> {
        AlertBody {
            status: if a.is_resolved() { "resolved" } else { "firing" },
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: a.starts_at.to_rfc3339(),
            ends_at: a.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.to_rfc3339()),
            fingerprint: a.fingerprint(),
            instance: &a.instance,
            generator_url: n.control_link(a),
        }
    };
    Body {
        version: "4",
        receiver: &n.receiver,
        status: n.status(),
        group_key: &n.group_key,
        group_labels: &n.group_labels,
        common_labels: n.common_labels(),
        escalation: n.escalation,
        external_url: &n.external_url,
        alerts: n.firing.iter().chain(&n.resolved).map(alert).collect(),
    }
}

/// Alertmanager's webhook payload (version 4), and `escalation`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Body<'a> {
    version: &'static str,
    receiver: &'a str,
    status: &'static str,
    group_key: &'a str,
    group_labels: &'a Labels,
    common_labels: Labels,
    escalation: bool,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    alerts: Vec<AlertBody<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertBody<'a> {
    status: &'static str,
    labels: &'a Labels,
    annotations: &'a std::collections::BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    fingerprint: String,
    instance: &'a str,
    /// The control's page (Alertmanager's field for where an alert comes from).
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    generator_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::notification::tests::{alert, notification};

    #[test]
    fn alertmanager_shape_and_a_verifiable_signature() {
        let b = serde_json::to_value(body(&notification(vec![alert("web-1", "high", false)], vec![alert("web-2", "low", true)]))).unwrap();
        assert_eq!((b["version"].as_str(), b["status"].as_str()), (Some("4"), Some("firing")));
        for key in ["receiver", "groupKey", "groupLabels", "commonLabels", "escalation", "externalURL"] {
            assert!(b.get(key).is_some(), "{key} in {b}");
        }
        for key in ["labels", "annotations", "startsAt", "endsAt", "fingerprint", "instance"] {
            assert!(b["alerts"][0].get(key).is_some(), "{key} in {b}");
        }
        assert_eq!(b["alerts"][1]["endsAt"].as_str().map(|t| t.ends_with("00:00")), Some(true), "a resolved alert's end: {b}");
        assert_eq!(b["alerts"][0]["labels"]["asset"], "web-1");
        assert_eq!(b["alerts"][1]["status"], "resolved");
        assert_eq!(b["alerts"][0]["generatorURL"], "http://127.0.0.1:8080/controls/linux.sshd.root_login_disabled");
        assert_eq!(b["alerts"][0]["annotations"]["remediation"], "Set `PermitRootLogin no` and reload sshd.");
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", &[b"what do ya want for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = signature("s3cret", "1767225600", br#"{"a":1}"#);
        assert_eq!(sig, format!("sha256={}", hmac_hex(b"s3cret", &[br#"1767225600.{"a":1}"#])));
        assert_ne!(sig, signature("s3cret", "1767225601", br#"{"a":1}"#), "the timestamp is signed");
    }
}
