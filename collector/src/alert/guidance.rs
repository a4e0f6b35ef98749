//! What to do about an alert: the control's remediation, shortened to one
//! line ([`crate::policy::Control::fix_line`]), as the `remediation` annotation of every violation and drift
//! alert. The alerting task adds it from the packs in force to the alerts
//! the pipeline raises and to those restored from the store, through
//! [`annotate`] alone, so both carry the same text. Receivers show it with
//! a link to the control's page ([`super::notification::Notification::control_link`]).

use super::model::Alert;
use crate::policy::PolicySet;

/// Adds the `remediation` annotation to a violation or drift alert whose
/// control is in the packs; other alerts (conditions, SLOs, keys) carry
/// their own remediation and are left as they are.
pub fn annotate(alert: &mut Alert, policies: &PolicySet) {
    if !matches!(alert.labels.get("alertname").map(String::as_str), Some("violation" | "drift")) {
        return;
    }
    let Some((_, c)) = alert.labels.get("control").and_then(|id| policies.get(id)) else { return };
    let line = c.control.fix_line();
    if !line.is_empty() {
        alert.annotations.insert("remediation".into(), line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notification tests' alert, without a fix line yet.
    fn alert(asset: &str, severity: &str, resolved: bool) -> Alert {
        let mut a = crate::alert::notification::tests::alert(asset, severity, resolved);
        a.annotations.remove("remediation");
        a
    }

    fn policies() -> PolicySet {
        let text = "pack: t\ncontrols:\n  - id: linux.sshd.root_login_disabled\n    title: t\n    severity: high\n    check: 'x.a'\n    \
                    frameworks: {soc2: [CC6.1]}\n    remediation: |\n      Set `PermitRootLogin no`\n      and reload sshd.\n\n      Longer background that stays on the control's page.\n";
        PolicySet::new(crate::policy::load_text(std::path::Path::new("t.yaml"), text).unwrap())
    }

    #[test]
    fn violations_get_the_first_paragraph_on_one_line() {
        let mut a = alert("web-1", "high", false);
        annotate(&mut a, &policies());
        assert_eq!(a.annotations["remediation"], "Set `PermitRootLogin no` and reload sshd.");
    }

    #[test]
    fn other_alerts_and_unknown_controls_are_left_alone() {
        let mut condition = alert("web-1", "high", false);
        condition.labels.insert("alertname".into(), "slo_burn".into());
        annotate(&mut condition, &policies());
        assert!(!condition.annotations.contains_key("remediation"));
        let mut gone = alert("web-1", "high", false);
        gone.labels.insert("control".into(), "removed.control".into());
        annotate(&mut gone, &policies());
        assert!(!gone.annotations.contains_key("remediation"));
    }
}
