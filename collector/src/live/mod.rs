//! The live drift view: a page the collector serves at `/ui` (one file,
//! styles and script inline, nothing from a CDN) showing the fleet's
//! posture per framework and drift events as they happen, with filters; an
//! asset page (`#/asset/<id>`, linked from notifications as `/assets/<id>`)
//! with its drift timeline, each change's diff, and its results with the
//! age of their evidence and what to do where one does not pass; and a
//! control page (`#/control/<id>`, `/controls/<id>`) with what it checks,
//! why, how to fix it, and where it does not pass.
//!
//! [`Hub`] fans the drift events of each stored batch out to every open
//! page (server-sent events at `/api/v1/live`); a page that falls behind
//! skips what it missed and says so. History comes from the store
//! (`/api/v1/drift`), so the page shows the same events as the dashboards.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::eval::drift::DriftEvent;
use crate::eval::rows::drift_row;
use crate::store::rows::DriftRow;

/// The page.
pub const PAGE: &str = include_str!("index.html");

/// The page's Content-Security-Policy: its one inline script and one
/// inline style by their SHA-256 (nothing else runs, whatever text a host
/// managed to get into the data it shows), requests only to its own
/// origin, no framing, no forms, no base URL.
pub fn content_security_policy() -> &'static str {
    static CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let hash = |open: &str, close: &str| {
            use base64::Engine as _;
            use sha2::Digest as _;
            let body = PAGE.split_once(open).and_then(|(_, rest)| rest.split_once(close)).map_or("", |(b, _)| b);
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()))
        };
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>")
        )
    });
    &CSP
}

/// Events buffered per slow page before it skips ahead.
const BUFFER: usize = 1024;

/// One drift event as the page (and `/api/v1/drift`) shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftView {
    pub drift_id: String,
    pub asset_id: String,
    pub control_id: String,
    pub title: String,
    pub severity: String,
    /// `regressed`, `remediated` or `changed`.
    pub direction: String,
    pub from: String,
    pub to: String,
    pub at: DateTime<Utc>,
    /// `framework:requirement`.
    pub frameworks: Vec<String>,
    pub before: BTreeMap<String, Value>,
    pub after: BTreeMap<String, Value>,
    pub changed: Vec<String>,
    pub cause: Option<Cause>,
    pub labels: BTreeMap<String, String>,
}

/// The audit event held responsible.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cause {
    pub event_id: String,
    pub source: String,
    pub action: String,
    pub user: String,
    pub object: String,
    pub at: DateTime<Utc>,
    pub matched: String,
}

impl DriftView {
    /// From a stored row (the asset's labels joined by the caller).
    pub fn from_row(r: DriftRow, labels: BTreeMap<String, String>) -> Self {
        let json = |s: &str| serde_json::from_str(s).unwrap_or_default();
        DriftView {
            before: json(&r.before),
            after: json(&r.after),
            cause: (!r.cause_event_id.is_empty()).then(|| Cause {
                event_id: r.cause_event_id,
                source: r.cause_source,
                action: r.cause_action,
                user: r.cause_user,
                object: r.cause_object,
                at: crate::store::time(r.cause_at),
                matched: r.cause_matched,
            }),
            drift_id: r.drift_id,
            asset_id: r.asset_id,
            control_id: r.control_id,
            title: r.title,
            severity: r.severity,
            direction: r.direction,
            from: r.from_status,
            to: r.to_status,
            at: crate::store::time(r.at),
            frameworks: r.frameworks,
            changed: r.changed,
            labels,
        }
    }

    /// From a drift event just stored.
    pub fn from_event(d: &DriftEvent) -> Self {
        Self::from_row(drift_row(d, ""), d.asset_labels.clone())
    }
}

/// Fans drift events out to every open page.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<DriftView>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { tx: broadcast::channel(BUFFER).0 }
    }
}

impl Hub {
    /// Publishes the drift events of a stored batch (none listening: dropped).
    pub fn publish(&self, drifts: &[DriftEvent]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for d in drifts {
            let _ = self.tx.send(DriftView::from_event(d));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DriftView> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in ["http://", "https://", "<script src", "<link"] {
            assert!(!PAGE.contains(external), "the page loads nothing from elsewhere ({external})");
        }
    }

    #[test]
    fn the_policy_allows_the_pages_own_inline_script_and_style_only() {
        assert_eq!(PAGE.matches("<script>").count(), 1, "one inline script, hashed in the policy");
        assert_eq!(PAGE.matches("<style>").count(), 1, "one inline style, hashed in the policy");
        assert!(!PAGE.contains(" style=\"") && !PAGE.contains(" onclick="), "no inline attributes (the policy blocks them)");
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"), "not the hash of an empty block: {csp}");
    }
}
