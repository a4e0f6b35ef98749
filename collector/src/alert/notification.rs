//! A notification: what is sent to a receiver about one alert group, as
//! [`super::dispatch`] makes it; each receiver kind
//! ([`crate::receivers`]) turns it into a request.

use super::matcher::Labels;
#[cfg(test)]
use super::model::Alert;

/// What is sent to a receiver about one alert group.
#[derive(Debug, Clone)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    /// Alerts firing now (not muted).
    pub firing: Vec<super::model::Alert>,
    /// Alerts resolved since the group was last notified.
    pub resolved: Vec<super::model::Alert>,
    /// Sent because the group stayed unresolved past its route's
    /// escalation time.
    pub escalation: bool,
    /// Base URL for links (the collector's UI).
    pub external_url: String,
}

impl Notification {
    /// `firing` while any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.firing.is_empty() {
            "resolved"
        } else {
            "firing"
        }
    }

    /// Labels every alert of the notification shares.
    pub fn common_labels(&self) -> Labels {
        let mut all = self.firing.iter().chain(&self.resolved);
        let Some(first) = all.next() else { return Labels::new() };
        let mut common = first.labels.clone();
        for a in all {
            common.retain(|k, v| a.labels.get(k) == Some(v));
        }
        common
    }

    /// The highest severity among the firing (else resolved) alerts.
    pub fn severity(&self) -> &str {
        let rank = |s: &str| match s {
            "critical" => 4,
            "high" => 3,
            "medium" => 2,
            "low" => 1,
            _ => 0,
        };
        let alerts = if self.firing.is_empty() { &self.resolved } else { &self.firing };
        alerts.iter().map(|a| a.severity()).max_by_key(|s| rank(s)).unwrap_or("none")
    }

    /// A one-line summary.
    pub fn title(&self) -> String {
        let alerts = if self.firing.is_empty() { &self.resolved } else { &self.firing };
        let what = match alerts.as_slice() {
            [one] => one.annotations.get("summary").cloned().unwrap_or_else(|| one.fingerprint()),
            many => format!("{} alerts ({})", many.len(), label_text(&self.group_labels)),
        };
        format!("{}{}: {what}", if self.escalation { "[ESCALATED] " } else { "" }, self.status().to_uppercase())
    }

    /// Link to the first alert's asset in the collector's UI.
    pub fn link(&self) -> Option<String> {
        let a = self.firing.first().or(self.resolved.first())?;
        self.page("assets", a.labels.get("asset")?)
    }

    /// Link to `alert`'s control in the collector's UI: what it checks,
    /// why, the whole remediation, and where else it fails.
    pub fn control_link(&self, alert: &super::model::Alert) -> Option<String> {
        self.page("controls", alert.labels.get("control")?)
    }

    /// Link to `alert`'s own page: its asset's, else its control's.
    pub fn page_of(&self, alert: &super::model::Alert) -> Option<String> {
        match alert.labels.get("asset") {
            Some(asset) => self.page("assets", asset),
            None => self.control_link(alert),
        }
    }

    /// `<external_url>/<kind>/<id>`, the id one encoded path segment.
    fn page(&self, kind: &str, id: &str) -> Option<String> {
        Some(format!("{}/{kind}/{}", self.external_url.trim_end_matches('/'), percent_encode(id)))
    }
}

/// A path segment with every byte but RFC 3986's unreserved ones
/// percent-encoded: an asset id (which a host chooses) can neither leave
/// its segment nor end a link in a receiver's markup (`|`, `>`).
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn label_text(l: &Labels) -> String {
    l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::Utc;

    pub fn alert(asset: &str, severity: &str, resolved: bool) -> Alert {
        let labels: Labels = [
            ("alertname", "violation"),
            ("asset", asset),
            ("control", "linux.sshd.root_login_disabled"),
            ("severity", severity),
            ("frameworks", "soc2:CC6.1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Alert {
            labels,
            annotations: [
                ("summary".to_string(), format!("SSH root login is disabled on {asset}")),
                ("diff".to_string(), "sshd.config.permitrootlogin: \"no\" → \"yes\"".to_string()),
                ("remediation".to_string(), "Set `PermitRootLogin no` and reload sshd.".to_string()),
            ]
            .into(),
            starts_at: Utc::now(),
            ends_at: resolved.then(Utc::now),
            instance: format!("v-{asset}"),
            one_shot: false,
        }
    }

    pub fn notification(firing: Vec<Alert>, resolved: Vec<Alert>) -> Notification {
        Notification {
            receiver: "r".into(),
            group_key: "0.1:abc".into(),
            group_labels: [("asset".to_string(), "web-1".to_string())].into(),
            firing,
            resolved,
            escalation: false,
            external_url: "http://127.0.0.1:8080".into(),
        }
    }

    #[test]
    fn status_severity_and_common_labels() {
        let n = notification(vec![alert("web-1", "medium", false), alert("web-1", "critical", false)], vec![]);
        assert_eq!((n.status(), n.severity()), ("firing", "critical"));
        assert_eq!(n.common_labels().get("asset").map(String::as_str), Some("web-1"));
        assert!(!n.common_labels().contains_key("severity"));
        assert!(n.title().starts_with("FIRING: 2 alerts"));
        let r = notification(vec![], vec![alert("web-1", "high", true)]);
        assert_eq!(r.status(), "resolved");
        assert_eq!(r.link().as_deref(), Some("http://127.0.0.1:8080/assets/web-1"));
        assert_eq!(r.control_link(&r.resolved[0]).as_deref(), Some("http://127.0.0.1:8080/controls/linux.sshd.root_login_disabled"));
    }
}
