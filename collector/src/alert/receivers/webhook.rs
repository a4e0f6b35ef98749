//! Generic JSON webhook: the notification in Alertmanager's webhook shape
//! (`version` 4: `status`, `groupKey`, `groupLabels`, `commonLabels`,
//! `alerts` with `labels`, `annotations`, `startsAt`, `endsAt`,
//! `fingerprint`). With a `secret`, each request carries
//! `X-Driftwatch-Timestamp` (Unix seconds) and `X-Driftwatch-Signature:
//! sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, so a receiver can
//! verify it and reject replays.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::{Kind, Notification};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Shared secret for the signature header; never logged.
    pub secret: Option<String>,
}

pub struct Webhook {
    url: String,
    secret: Option<String>,
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig) -> Self {
        Webhook { url: cfg.url.clone(), secret: cfg.secret.clone() }
    }
}

impl Kind for Webhook {
    fn request(&self, client: &reqwest::Client, n: &Notification) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(&body(n)).unwrap_or_default();
        let mut req = client.post(&self.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let ts = chrono::Utc::now().timestamp().to_string();
            req = req.header("X-Driftwatch-Timestamp", &ts).header("X-Driftwatch-Signature", signature(secret, &ts, &body));
        }
        req.body(body)
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

pub fn body(n: &Notification) -> Value {
    let alert = |a: &super::super::model::Alert| {
        json!({
            "status": if a.is_resolved() { "resolved" } else { "firing" },
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": a.starts_at.to_rfc3339(),
            "endsAt": a.ends_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "fingerprint": a.fingerprint(),
            "instance": a.instance,
        })
    };
    json!({
        "version": "4",
        "receiver": n.receiver,
        "status": n.status(),
        "groupKey": n.group_key,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "escalation": n.escalation,
        "externalURL": n.external_url,
        "alerts": n.firing.iter().chain(&n.resolved).map(alert).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{alert, notification};
    use super::*;

    #[test]
    fn alertmanager_shape_and_a_verifiable_signature() {
        let b = body(&notification(vec![alert("web-1", "high", false)], vec![alert("web-2", "low", true)]));
        assert_eq!((b["version"].as_str(), b["status"].as_str()), (Some("4"), Some("firing")));
        assert_eq!(b["alerts"][0]["labels"]["asset"], "web-1");
        assert_eq!(b["alerts"][1]["status"], "resolved");
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
