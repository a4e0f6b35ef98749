//! Scheduled reports (`reports.schedules`): a framework's report over the
//! last `every`, sent every `every` to email receivers (its summary as the
//! message, the report attached in the schedule's format) and webhooks
//! (the report as JSON). The first goes out once the schedule is added;
//! when each was last sent is kept in the notification log (group
//! `report:<name>`), so a restart neither repeats nor skips one.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::render::Format;
use super::Report;

/// The `reports` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    pub schedules: Vec<Schedule>,
    /// How often schedules are looked at (on the leader).
    pub check_secs: u64,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig { schedules: Vec::new(), check_secs: 60 }
    }
}

/// One scheduled report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    pub framework: String,
    /// The period each report covers and how often one is sent, e.g. `7d`.
    pub every: String,
    /// Names of `alerts.receivers` (email or webhook kinds).
    pub receivers: Vec<String>,
    /// The attachment's format (email): html (default), pdf, csv, json, oscal.
    #[serde(default = "html")]
    pub format: Format,
}

fn html() -> Format {
    Format::Html
}

impl Schedule {
    /// `every` as a duration (validated at start).
    pub fn every(&self) -> chrono::Duration {
        humantime::parse_duration(&self.every).ok().and_then(|d| chrono::Duration::from_std(d).ok()).unwrap_or(chrono::Duration::days(7))
    }

    /// The group its deliveries are logged under.
    pub fn log_key(&self) -> String {
        format!("report:{}", self.name)
    }
}

impl ReportsConfig {
    /// Problems, each naming its field; `receivers` are the configured
    /// receivers' names with whether they take reports.
    pub fn validate(&self, receivers: &[(String, bool)], problems: &mut Vec<String>) {
        if self.check_secs == 0 {
            problems.push("reports.check_secs: must be at least 1".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("reports.schedules[{i}]");
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                problems.push(format!("{at}.name: {:?} must be letters, digits, '.', '_' or '-'", s.name));
            }
            if !names.insert(&s.name) {
                problems.push(format!("{at}.name: {:?} is used twice", s.name));
            }
            if crate::policy::frameworks::framework(&s.framework).is_none() {
                problems.push(format!("{at}.framework: {:?} is not a known framework", s.framework));
            }
            match humantime::parse_duration(&s.every) {
                Ok(d) if d >= std::time::Duration::from_secs(60) => {}
                Ok(_) => problems.push(format!("{at}.every: {:?} is shorter than a minute", s.every)),
                Err(e) => problems.push(format!("{at}.every: {:?}: {e} (e.g. \"7d\")", s.every)),
            }
            if s.receivers.is_empty() {
                problems.push(format!("{at}.receivers: name at least one receiver"));
            }
            for r in &s.receivers {
                match receivers.iter().find(|(n, _)| n == r) {
                    None => problems.push(format!("{at}.receivers: no receiver {r:?} in alerts.receivers")),
                    Some((_, false)) => problems.push(format!("{at}.receivers: {r:?} takes no reports (email and webhook receivers do)")),
                    Some(_) => {}
                }
            }
        }
    }
}

/// Whether a report last sent at `last` is due at `now`.
pub fn due(last: Option<DateTime<Utc>>, every: chrono::Duration, now: DateTime<Utc>) -> bool {
    last.is_none_or(|l| now - l >= every)
}

/// The message's subject.
pub fn subject(r: &Report) -> String {
    format!("Driftwatch report: {}, {} to {}", r.framework_name, r.from.format("%Y-%m-%d"), r.to.format("%Y-%m-%d"))
}

/// The summary a message carries: coverage first, the score and its
/// trend, the gaps soonest due, and what is attached.
pub fn summary(r: &Report, attachment: &str) -> String {
    let s = &r.summary;
    let mut t = format!("{}\n\n", super::render::coverage_line(r));
    t += &format!(
        "Score {:.1} ({:.1} without waivers){}; {} requirements passing, {} partial, {} failing, {} waived, on {} assets.\n",
        s.score,
        s.score_without_waivers,
        s.trend.map(|d| format!(", {d:+.1} over the period")).unwrap_or_default(),
        s.passing,
        s.partial,
        s.failing,
        s.waived,
        s.assets
    );
    if r.gaps.is_empty() {
        t += "\nNo gaps.\n";
    } else {
        t += &format!("\n{} gap(s), soonest due first:\n", r.gaps.len());
        for g in r.gaps.iter().take(10) {
            t += &format!(
                "  {} due {}{} ({}, {} asset(s)){}\n",
                g.id,
                g.due.format("%Y-%m-%d"),
                if g.overdue { " OVERDUE" } else { "" },
                g.severity.as_str(),
                g.failing_assets,
                g.assignee.as_ref().map(|a| format!(", assigned to {a}")).unwrap_or_default()
            );
        }
    }
    t += &format!("\nThe full report is attached ({attachment}).\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_and_a_report_is_due_once_per_period() {
        let cfg: ReportsConfig = serde_yaml::from_str(
            "schedules:\n  - {name: weekly, framework: soc2, every: 7d, receivers: [mail]}\n  - {name: weekly, framework: nope, every: 10s, receivers: [slack, ghost]}\n",
        )
        .unwrap();
        let mut p = Vec::new();
        cfg.validate(&[("mail".into(), true), ("slack".into(), false)], &mut p);
        let all = p.join("\n");
        for want in [
            "reports.schedules[1].name: \"weekly\" is used twice",
            "framework: \"nope\" is not a known framework",
            "every: \"10s\" is shorter than a minute",
            "\"slack\" takes no reports",
            "no receiver \"ghost\"",
        ] {
            assert!(all.contains(want), "{want} not in {all}");
        }
        assert_eq!(p.len(), 5, "the first schedule is fine: {all}");
        let now = Utc::now();
        let week = cfg.schedules[0].every();
        assert!(due(None, week, now));
        assert!(!due(Some(now - chrono::Duration::days(6)), week, now));
        assert!(due(Some(now - chrono::Duration::days(7)), week, now));
    }

    #[test]
    fn the_summary_leads_with_coverage_and_lists_the_gaps() {
        let r = crate::report::tests::report();
        let t = summary(&r, "soc2.html");
        assert!(t.starts_with("Coverage "), "{t}");
        assert!(t.contains("soc2:CC6.1 due ") && t.contains("attached (soc2.html)"), "{t}");
        assert!(subject(&r).starts_with("Driftwatch report: SOC 2"), "{}", subject(&r));
    }
}
