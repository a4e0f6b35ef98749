//! The policy pack file format (YAML). One file is one pack; a directory of
//! packs is loaded recursively. Unknown fields are errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::store::values::Severity;

/// One policy pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// Pack name, e.g. `linux-ssh`.
    pub pack: String,
    #[serde(default)]
    pub description: String,
    /// Named CEL expressions the pack's checks and detections use as
    /// `vars.<name>` (in file order; a variable does not use another).
    #[serde(default)]
    pub variables: serde_yaml::Mapping,
    pub controls: Vec<Control>,
}

/// Which assets a control applies to.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppliesTo {
    /// Asset kinds (`host`, `k8s-node`, `k8s-cluster`); empty means all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Label selector: every listed label must have the given value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One control: automated (a `check` over facts, a `detect` over a
/// stream) or attested by people (`attest`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Globally unique id, e.g. `linux.sshd.root_login_disabled`.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rationale: String,
    pub severity: Severity,
    #[serde(default)]
    pub applies_to: AppliesTo,
    /// A CEL expression over the asset's facts that is `true` when
    /// compliant. Exactly one of `check` and `detect` is given.
    #[serde(default)]
    pub check: Option<String>,
    /// A detection over the audit or SLA stream instead of a fact check.
    #[serde(default)]
    pub detect: Option<Detect>,
    /// What no agent can observe (access reviews, training, restore
    /// tests): people attest it, with evidence files, for a while.
    #[serde(default)]
    pub attest: Option<Attest>,
    #[serde(default)]
    pub remediation: String,
    /// Framework → requirement ids this control gives evidence for.
    pub frameworks: BTreeMap<String, Vec<String>>,
    /// Equivalent rules elsewhere, e.g. `ssg: sshd_disable_root_login`.
    #[serde(default)]
    pub references: BTreeMap<String, String>,
}

/// The longest fix line ([`Control::fix_line`]).
pub const FIX_LINE_CHARS: usize = 280;

impl Control {
    /// The remediation's [`fix_line`].
    pub fn fix_line(&self) -> String {
        fix_line(&self.remediation)
    }
}

/// A remediation's first paragraph on one line (whitespace folded), cut
/// after [`FIX_LINE_CHARS`] characters with an ellipsis: what an alert or
/// a listing shows; the control's page shows it all.
pub fn fix_line(remediation: &str) -> String {
    let first = remediation.trim().split("\n\n").next().unwrap_or_default();
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= FIX_LINE_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(FIX_LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The stream a detection watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectStream {
    /// Audit events, as the CEL variable `event`.
    Audit,
    /// Probe results, as the CEL variable `probe`.
    Sla,
}

impl DetectStream {
    /// The CEL variable the stream's record is bound to.
    pub fn variable(self) -> &'static str {
        match self {
            DetectStream::Audit => "event",
            DetectStream::Sla => "probe",
        }
    }
}

/// A detection: the control fails while at least `threshold` records
/// matching `match` fall within a sliding `window`, counted per `group_by`
/// key (e.g. 5 failed SSH logins for one user in 5 minutes), and passes
/// again once the window holds fewer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    pub stream: DetectStream,
    /// CEL over the record (`event` or `probe`); `true` counts it.
    #[serde(rename = "match")]
    pub matches: String,
    /// CEL expressions over the record whose values form the group key;
    /// empty: one group per asset.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Matching records within the window that make the control fail.
    #[serde(default = "one")]
    pub threshold: u32,
    /// Sliding window, e.g. `5m`, `1h`, `30s`.
    #[serde(default = "five_minutes")]
    pub window: String,
}

/// An attested control: its result is the latest attestation while it
/// holds (`cadence` after it was made), `unknown` once that has passed.
/// Attestations are of the organisation: the result belongs to the asset
/// [`ORGANIZATION`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Attest {
    /// Who attests: a team or a role (the `owner` of its reminders).
    pub owner: String,
    /// How long an attestation holds, e.g. `90d`, `365d`.
    pub cadence: String,
    /// What the evidence attached must show.
    pub evidence: String,
    /// How long before expiry the reminder fires (default `14d`).
    #[serde(default = "fourteen_days")]
    pub remind_before: String,
}

/// The asset attested controls' results belong to.
pub const ORGANIZATION: &str = "organization";

fn fourteen_days() -> String {
    "14d".into()
}

fn one() -> u32 {
    1
}

fn five_minutes() -> String {
    "5m".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_remediation(text: &str) -> Control {
        let mut c: Control = serde_yaml::from_str("{id: x, title: x, severity: low, check: 'true', frameworks: {}}").unwrap();
        c.remediation = text.to_string();
        c
    }

    #[test]
    fn a_fix_line_is_the_first_paragraph_on_one_line_and_bounded() {
        assert_eq!(with_remediation("  Set `X no`\n  and reload.\n\nBackground.").fix_line(), "Set `X no` and reload.");
        let line = with_remediation(&"word ".repeat(200)).fix_line();
        assert_eq!(line.chars().count(), FIX_LINE_CHARS);
        assert!(line.ends_with('…'));
        assert_eq!(with_remediation("").fix_line(), "");
    }
}
