//! What keeps an alert quiet: silences (matchers and a time range, with an
//! author and a comment; created with `driftwatch-collector silence add`
//! and stored in ClickHouse), maintenance windows (recurring, from the
//! configuration), and inhibition rules (a firing source alert mutes
//! matching targets that share the `equal` labels).
//!
//! A muted alert is still tracked: when the silence ends, a still-firing
//! alert is notified; a resolve of an alert that was never notified is not.

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::matcher::{all_match, Labels, Matcher};

/// A silence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        self.is_active(now) && all_match(&self.matchers, labels)
    }
}

/// A recurring maintenance window (UTC), e.g. Sundays 02:00–04:00.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub name: String,
    /// Alerts it mutes; empty: all.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Days it applies (`mon` … `sun`); empty: every day.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `HH:MM`, UTC.
    pub start: String,
    /// `HH:MM`, UTC; before `start` means the window crosses midnight.
    pub end: String,
}

impl MaintenanceWindow {
    /// Validates the window; the messages name the field.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut e = Vec::new();
        for (f, v) in [("start", &self.start), ("end", &self.end)] {
            if NaiveTime::parse_from_str(v, "%H:%M").is_err() {
                e.push(format!("{at}.{f}: {v:?} is not HH:MM"));
            }
        }
        for d in &self.weekdays {
            if d.parse::<Weekday>().is_err() {
                e.push(format!("{at}.weekdays: {d:?} is not a weekday (mon … sun)"));
            }
        }
        e
    }

    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        let (Ok(start), Ok(end)) = (NaiveTime::parse_from_str(&self.start, "%H:%M"), NaiveTime::parse_from_str(&self.end, "%H:%M")) else {
            return false;
        };
        let t = now.time();
        let day_ok = |d: Weekday| self.weekdays.is_empty() || self.weekdays.iter().any(|w| w.parse::<Weekday>().ok() == Some(d));
        let inside = if start <= end {
            day_ok(now.weekday()) && t >= start && t < end
        } else {
            // Crosses midnight: the part after midnight belongs to the day before.
            (day_ok(now.weekday()) && t >= start) || (day_ok(now.weekday().pred()) && t < end)
        };
        inside && all_match(&self.matchers, labels)
    }
}

/// An inhibition rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    /// Labels that must be equal on source and target (e.g. `asset`).
    #[serde(default)]
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Whether a firing `source` mutes `target`.
    pub fn inhibits(&self, source: &Labels, target: &Labels) -> bool {
        source != target
            && all_match(&self.source_matchers, source)
            && all_match(&self.target_matchers, target)
            && self.equal.iter().all(|l| source.get(l) == target.get(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn silences_match_within_their_time() {
        let now = Utc::now();
        let s = Silence {
            id: "s".into(),
            matchers: vec![Matcher::parse("asset=web-1").unwrap()],
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::minutes(1),
            created_by: "alice".into(),
            comment: "patching".into(),
        };
        assert!(s.mutes(&l(&[("asset", "web-1")]), now));
        assert!(!s.mutes(&l(&[("asset", "web-2")]), now));
        assert!(!s.mutes(&l(&[("asset", "web-1")]), now + chrono::Duration::minutes(2)));
    }

    #[test]
    fn maintenance_windows_recur_and_cross_midnight() {
        let w: MaintenanceWindow =
            serde_yaml::from_str("{name: m, matchers: [env=staging], weekdays: [sat], start: '23:00', end: '02:00'}").unwrap();
        assert!(w.validate("w").is_empty());
        let staging = l(&[("env", "staging")]);
        let sat_2330 = Utc.with_ymd_and_hms(2026, 11, 21, 23, 30, 0).unwrap();
        let sun_0130 = Utc.with_ymd_and_hms(2026, 11, 22, 1, 30, 0).unwrap();
        let sun_2330 = Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap();
        assert!(w.mutes(&staging, sat_2330));
        assert!(w.mutes(&staging, sun_0130), "after midnight belongs to Saturday's window");
        assert!(!w.mutes(&staging, sun_2330));
        assert!(!w.mutes(&l(&[("env", "prod")]), sat_2330));
        let bad: MaintenanceWindow = serde_yaml::from_str("{name: m, weekdays: [someday], start: '25:00', end: '02:00'}").unwrap();
        assert_eq!(bad.validate("w").len(), 2);
    }

    #[test]
    fn inhibition_needs_equal_labels() {
        let r: InhibitRule =
            serde_yaml::from_str("{source_matchers: [alertname=host_down], target_matchers: [alertname=probe_failed], equal: [asset]}")
                .unwrap();
        let down = l(&[("alertname", "host_down"), ("asset", "a")]);
        assert!(r.inhibits(&down, &l(&[("alertname", "probe_failed"), ("asset", "a")])));
        assert!(!r.inhibits(&down, &l(&[("alertname", "probe_failed"), ("asset", "b")])));
    }
}
