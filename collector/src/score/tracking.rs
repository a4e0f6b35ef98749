//! Gaps tracked to closure. A gap (a framework requirement not met
//! fleet-wide) has a stable id, `<framework>:<requirement>`; its tracking
//! (state, assignee, note, the waiver that accepted its risk) changes
//! through the CLI and the API, each change kept in the store's history.
//! The reminders a gap raises as its due date nears (30, 14, 7 and 1 days
//! before) and once overdue are conditions ([`conditions`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Gap;
use crate::alert::model::Alert;
use crate::store::gaps::GapEventRow;
use crate::store::{secs, time};

/// Where a gap is on its way to closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GapState {
    #[default]
    Open,
    InProgress,
    /// Accepted by a waiver of the requirement (while it holds, the
    /// requirement counts as met and the gap is not listed).
    RiskAccepted,
    Resolved,
}

impl GapState {
    pub fn as_str(self) -> &'static str {
        match self {
            GapState::Open => "open",
            GapState::InProgress => "in_progress",
            GapState::RiskAccepted => "risk_accepted",
            GapState::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for GapState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(GapState::Open),
            "in_progress" => Ok(GapState::InProgress),
            "risk_accepted" => Ok(GapState::RiskAccepted),
            "resolved" => Ok(GapState::Resolved),
            _ => Err(format!("{s:?}: expected open, in_progress, risk_accepted or resolved")),
        }
    }
}

/// A gap's id: `<framework>:<requirement>`.
pub fn gap_id(framework: &str, requirement: &str) -> String {
    format!("{framework}:{requirement}")
}

/// The framework and requirement of a gap id.
pub fn parse_gap_id(id: &str) -> Option<(&str, &str)> {
    id.split_once(':').filter(|(f, r)| !f.is_empty() && !r.is_empty())
}

/// A gap's tracking, as its latest change left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Tracking {
    pub state: GapState,
    pub assignee: Option<String>,
    pub note: String,
    /// The waiver that accepted the risk.
    pub waiver_id: Option<String>,
    pub changed_by: String,
    pub changed_at: Option<DateTime<Utc>>,
}

impl Tracking {
    pub fn of(row: &GapEventRow) -> Tracking {
        Tracking {
            state: row.state.parse().unwrap_or_default(),
            assignee: Some(row.assignee.clone()).filter(|a| !a.is_empty()),
            note: row.note.clone(),
            waiver_id: Some(row.waiver_id.clone()).filter(|w| !w.is_empty()),
            changed_by: row.changed_by.clone(),
            changed_at: Some(time(row.changed_at)),
        }
    }
}

/// The tracking of each gap: its latest change.
pub fn latest(rows: &[GapEventRow]) -> BTreeMap<String, Tracking> {
    let mut newest: BTreeMap<&str, &GapEventRow> = BTreeMap::new();
    for r in rows {
        if newest.get(r.gap_id.as_str()).is_none_or(|n| r.version > n.version) {
            newest.insert(&r.gap_id, r);
        }
    }
    newest.into_iter().map(|(id, r)| (id.to_string(), Tracking::of(r))).collect()
}

/// Every change of one gap, oldest first.
pub fn history(rows: &[GapEventRow], id: &str) -> Vec<Tracking> {
    let mut mine: Vec<&GapEventRow> = rows.iter().filter(|r| r.gap_id == id).collect();
    mine.sort_by_key(|r| r.version);
    mine.into_iter().map(Tracking::of).collect()
}

/// A change asked for: each field given replaces the current one (an
/// empty assignee clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    pub state: Option<GapState>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The longest note or assignee accepted.
pub const MAX_NOTE_CHARS: usize = 2000;

/// The row recording `change` of gap `id` (tracked as `current`) by `by`,
/// with `waiver_id` when the change accepts the risk. A change to
/// `risk_accepted` needs the waiver (made by the caller); one that changes
/// nothing is refused.
pub fn change_row(
    id: &str,
    current: Option<&Tracking>,
    change: Change,
    waiver_id: Option<String>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<GapEventRow, String> {
    if parse_gap_id(id).is_none() {
        return Err(format!("gap id {id:?}: expected <framework>:<requirement>, e.g. soc2:CC6.1"));
    }
    if by.trim().is_empty() {
        return Err("who makes the change must be named".into());
    }
    for (field, text) in [("assignee", change.assignee.as_deref()), ("note", change.note.as_deref())] {
        if text.is_some_and(|t| t.chars().count() > MAX_NOTE_CHARS || t.chars().any(|c| c.is_control() && c != '\n')) {
            return Err(format!("{field}: at most {MAX_NOTE_CHARS} characters, without control characters"));
        }
    }
    let base = current.cloned().unwrap_or_default();
    let state = change.state.unwrap_or(base.state);
    if state == GapState::RiskAccepted && waiver_id.is_none() {
        return Err("risk_accepted: the risk is accepted by a waiver of the requirement; give one (justification, risk, expiry)".into());
    }
    let next = Tracking {
        state,
        assignee: match change.assignee {
            Some(a) => Some(a.trim().to_string()).filter(|a| !a.is_empty()),
            None => base.assignee.clone(),
        },
        note: change.note.unwrap_or_default(),
        waiver_id: if state == GapState::RiskAccepted { waiver_id } else { None },
        changed_by: by.to_string(),
        changed_at: Some(now),
    };
    if current
        .is_some_and(|c| c.state == next.state && c.assignee == next.assignee && next.note.is_empty() && next.waiver_id == c.waiver_id)
    {
        return Err(format!("gap {id} is already {} with that assignee", next.state.as_str()));
    }
    Ok(GapEventRow {
        gap_id: id.to_string(),
        state: next.state.as_str().into(),
        assignee: next.assignee.unwrap_or_default(),
        note: next.note,
        waiver_id: next.waiver_id.unwrap_or_default(),
        changed_by: by.to_string(),
        changed_at: secs(&now),
        version: now.timestamp_millis().max(0) as u64,
    })
}

/// Sets each listed gap's tracking. A gap is listed because its
/// requirement is not met: one recorded `resolved` (or `risk_accepted`
/// whose waiver no longer holds) is `open` again, and says so.
pub fn track(gaps: &mut [Gap], tracking: &BTreeMap<String, Tracking>) {
    for g in gaps {
        let Some(t) = tracking.get(&g.id) else { continue };
        g.assignee = t.assignee.clone();
        g.state = t.state;
        if matches!(t.state, GapState::Resolved | GapState::RiskAccepted) {
            g.state = GapState::Open;
            g.reopened = true;
        }
    }
}

/// The gap reminders (`alerts.gaps`; `gaps: {}` turns them on with the
/// default days).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GapReminders {
    /// Days before the due date at which a gap's reminder fires.
    pub days: Vec<i64>,
}

impl Default for GapReminders {
    fn default() -> Self {
        GapReminders { days: vec![30, 14, 7, 1] }
    }
}

impl GapReminders {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.days.is_empty() || self.days.iter().any(|d| *d < 1) {
            problems.push("alerts.gaps.days: at least one day, each at least 1".into());
        }
    }
}

/// The risk waiver a gap's acceptance makes: the requirement, fleet-wide,
/// until `expires`.
pub fn risk_waiver(
    id: &str,
    justification: String,
    approver: String,
    risk: crate::policy::Severity,
    expires: DateTime<Utc>,
    ticket: String,
) -> crate::waiver::WaiverSpec {
    crate::waiver::WaiverSpec {
        id: String::new(),
        control: None,
        requirement: Some(id.to_string()),
        scope: crate::waiver::Scope { fleet: true, ..Default::default() },
        justification,
        approver,
        risk,
        ticket,
        starts: None,
        expires,
    }
}

/// The alert names of gap reminders.
pub const ALERTNAMES: [&str; 2] = ["gap_due", "gap_overdue"];

/// The reminders that hold at `now`: `gap_due` once the due date is one
/// of `cfg.days` away (30, 14, 7, 1 by default; the label `days` says the
/// nearest threshold crossed: each is a new notification), `gap_overdue` once it has passed.
/// Labelled with the gap, its framework and requirement, severity and
/// assignee (else the owners of its failing assets).
pub fn conditions(gaps: &[Gap], cfg: &GapReminders, now: DateTime<Utc>) -> Vec<Alert> {
    let mut days_before = cfg.days.clone();
    days_before.sort_unstable();
    let mut out = Vec::new();
    for g in gaps {
        let left = g.due - now;
        let (alertname, days, since, summary) = if g.overdue || left <= chrono::Duration::zero() {
            (ALERTNAMES[1], None, g.due, format!("gap {} is overdue since {}", g.id, g.due.format("%Y-%m-%d")))
        } else {
            let Some(d) = days_before.iter().copied().find(|d| left <= chrono::Duration::days(*d)) else { continue };
            (
                ALERTNAMES[0],
                Some(d),
                g.due - chrono::Duration::days(d),
                format!("gap {} is due on {} ({d} day(s) or less)", g.id, g.due.format("%Y-%m-%d")),
            )
        };
        let mut labels: BTreeMap<String, String> = [
            ("alertname", alertname.to_string()),
            ("gap", g.id.clone()),
            ("framework", g.framework.clone()),
            ("requirement", g.requirement.clone()),
            ("severity", g.severity.as_str().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(d) = days {
            labels.insert("days".into(), d.to_string());
        }
        match (&g.assignee, g.owners.is_empty()) {
            (Some(a), _) => {
                labels.insert("assignee".into(), a.clone());
                labels.insert("owner".into(), a.clone());
            }
            (None, false) => {
                labels.insert("owner".into(), g.owners.join(","));
            }
            (None, true) => {}
        }
        let fixes: Vec<String> =
            g.fixes.iter().map(|f| format!("{}: {}", f.control_id, crate::policy::model::fix_line(&f.remediation))).collect();
        let annotations = BTreeMap::from([
            ("summary".to_string(), summary),
            (
                "description".to_string(),
                format!("{} failing asset(s); controls {}; state {}", g.failing_assets, g.failing_controls.join(", "), g.state.as_str()),
            ),
            ("remediation".to_string(), fixes.join("\n")),
        ]);
        out.push(Alert::condition(labels, annotations, since));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
    }

    fn gap(id: &str, due_in_days: i64) -> Gap {
        let (fw, req) = parse_gap_id(id).unwrap();
        Gap {
            id: id.into(),
            framework: fw.into(),
            requirement: req.into(),
            status: super::super::RequirementStatus::Fail,
            severity: crate::policy::Severity::High,
            owners: vec!["web".into()],
            failing_controls: vec!["t.root".into()],
            failing_assets: 2,
            first_seen: t0() - Duration::days(10),
            due: t0() + Duration::days(due_in_days),
            overdue: due_in_days < 0,
            fixes: Vec::new(),
            state: GapState::Open,
            assignee: None,
            reopened: false,
        }
    }

    #[test]
    fn each_change_keeps_the_rest_of_the_tracking_and_the_latest_wins() {
        let a = change_row("soc2:CC6.1", None, Change { assignee: Some("alice".into()), ..Default::default() }, None, "bob", t0()).unwrap();
        assert_eq!((a.state.as_str(), a.assignee.as_str()), ("open", "alice"));
        let rows = vec![a.clone()];
        let now = latest(&rows);
        let b = change_row(
            "soc2:CC6.1",
            now.get("soc2:CC6.1"),
            Change { state: Some(GapState::InProgress), note: Some("patching".into()), ..Default::default() },
            None,
            "alice",
            t0() + Duration::hours(1),
        )
        .unwrap();
        assert_eq!((b.state.as_str(), b.assignee.as_str(), b.note.as_str()), ("in_progress", "alice", "patching"));
        let rows = vec![b.clone(), a];
        assert_eq!(latest(&rows)["soc2:CC6.1"].state, GapState::InProgress);
        let h = history(&rows, "soc2:CC6.1");
        assert_eq!(h.iter().map(|t| t.state).collect::<Vec<_>>(), [GapState::Open, GapState::InProgress]);
        // Nothing changed: refused.
        let same = change_row("soc2:CC6.1", latest(&rows).get("soc2:CC6.1"), Change::default(), None, "x", t0() + Duration::hours(2));
        assert!(same.unwrap_err().contains("already in_progress"));
    }

    #[test]
    fn risk_is_accepted_only_with_a_waiver_and_bad_input_is_named() {
        let accept = Change { state: Some(GapState::RiskAccepted), ..Default::default() };
        assert!(change_row("soc2:CC6.1", None, accept.clone(), None, "bob", t0()).unwrap_err().contains("by a waiver"));
        let r = change_row("soc2:CC6.1", None, accept, Some("w-1".into()), "bob", t0()).unwrap();
        assert_eq!((r.state.as_str(), r.waiver_id.as_str()), ("risk_accepted", "w-1"));
        assert!(change_row("nocolon", None, Change::default(), None, "bob", t0())
            .unwrap_err()
            .contains("expected <framework>:<requirement>"));
        let long = Change { note: Some("x".repeat(MAX_NOTE_CHARS + 1)), ..Default::default() };
        assert!(change_row("soc2:CC6.1", None, long, None, "bob", t0()).unwrap_err().starts_with("note:"));
        assert!(change_row("soc2:CC6.1", None, Change::default(), None, " ", t0()).is_err());
        assert_eq!("done".parse::<GapState>().unwrap_err(), "\"done\": expected open, in_progress, risk_accepted or resolved");
    }

    #[test]
    fn a_listed_gap_recorded_resolved_is_open_again() {
        let mut gaps = vec![gap("soc2:CC6.1", 20), gap("soc2:CC6.6", 20)];
        let rows = vec![
            change_row("soc2:CC6.1", None, Change { state: Some(GapState::Resolved), ..Default::default() }, None, "a", t0()).unwrap(),
            change_row("soc2:CC6.6", None, Change { assignee: Some("carol".into()), ..Default::default() }, None, "a", t0()).unwrap(),
        ];
        track(&mut gaps, &latest(&rows));
        assert_eq!((gaps[0].state, gaps[0].reopened), (GapState::Open, true));
        assert_eq!((gaps[1].assignee.as_deref(), gaps[1].reopened), (Some("carol"), false));
    }

    #[test]
    fn reminders_fire_at_30_14_7_and_1_days_then_overdue() {
        let at = |due_in: i64| conditions(&[gap("pci-dss:2.2.6", due_in)], &GapReminders::default(), t0());
        assert!(at(31).is_empty());
        let days = |due_in: i64| at(due_in)[0].labels.get("days").cloned();
        assert_eq!(days(30).as_deref(), Some("30"));
        assert_eq!(days(15).as_deref(), Some("30"));
        assert_eq!(days(14).as_deref(), Some("14"));
        assert_eq!(days(7).as_deref(), Some("7"));
        assert_eq!(days(1).as_deref(), Some("1"));
        assert_ne!(at(14)[0].fingerprint(), at(15)[0].fingerprint(), "each threshold crossed notifies anew");
        let over = at(-2);
        assert_eq!((over[0].labels["alertname"].as_str(), over[0].labels["owner"].as_str()), ("gap_overdue", "web"));
        assert!(over[0].annotations["summary"].contains("overdue since 2026-02-27"));
    }
}
