//! The values the store's columns hold and every room shares: a
//! control's status and a severity. Defined here, at the bottom, so the
//! store depends on nothing above it; `eval` and `policy` re-export them.

use serde::{Deserialize, Serialize};

/// The result of one control on one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Error,
    NotApplicable,
    /// The evidence is missing or untrustworthy; counts against the score.
    Unknown,
    /// Failing, but exempted by a waiver in force.
    Waived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::NotApplicable => "not_applicable",
            Status::Unknown => "unknown",
            Status::Waived => "waived",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Pass, Status::Fail, Status::Error, Status::NotApplicable, Status::Unknown, Status::Waived]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// What the check itself said, as far as a stored status tells: a
    /// waived control fails; an unknown one said nothing trustworthy.
    pub fn checked(self) -> Option<Status> {
        match self {
            Status::Unknown => None,
            Status::Waived => Some(Status::Fail),
            s => Some(s),
        }
    }
}

/// Severity of a failing control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("{s:?}: expected low, medium, high or critical"))
    }
}
