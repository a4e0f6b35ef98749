//! What keeps an alert quiet: silences (matchers and a time range, with an
//! author and a comment; created with `driftwatch-collector silence add`
//! and stored in ClickHouse), maintenance windows (recurring, from the
//! configuration), and inhibition rules (a firing source alert mutes
//! matching targets that share the `equal` labels).
//!
//! A muted alert is still tracked: when the silence ends, a still-firing
//! alert is notified; a resolve of an alert that was never notified is not.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::matcher::{all_match, Labels, Matcher};
use crate::store::records::{SilenceRow, SilenceWriteRow};
use crate::store::{secs, time};

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

impl Silence {
    /// The row of this silence's new version, written at `now` (the
    /// latest version wins).
    pub fn row(&self, now: DateTime<Utc>) -> SilenceWriteRow {
        SilenceWriteRow {
            silence_id: self.id.clone(),
            matchers: self.matchers.iter().map(|m| m.to_string()).collect(),
            starts_at: secs(&self.starts_at),
            ends_at: secs(&self.ends_at),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            updated_at: secs(&now),
            // Milliseconds: an expiry right after creation still wins.
            version: now.timestamp_millis().max(0) as u64,
        }
    }

    /// The silence of a stored row; `None` (with an error log) when a
    /// stored matcher no longer parses: the silence then mutes nothing.
    pub fn from_row(r: SilenceRow) -> Option<Silence> {
        let matchers: Result<Vec<Matcher>, String> = r.matchers.iter().map(|m| Matcher::parse(m)).collect();
        match matchers {
            Ok(matchers) => Some(Silence {
                id: r.silence_id,
                matchers,
                starts_at: time(r.starts_at),
                ends_at: time(r.ends_at),
                created_by: r.created_by,
                comment: r.comment,
            }),
            Err(e) => {
                tracing::error!(silence = %r.silence_id, error = %e, "stored silence has a bad matcher; ignored");
                None
            }
        }
    }

    /// The silences of stored rows that still parse.
    pub fn from_rows(rows: Vec<SilenceRow>) -> Vec<Silence> {
        rows.into_iter().filter_map(Silence::from_row).collect()
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

    /// A hash of the `equal` labels' values: a source can only inhibit a
    /// target with the same.
    fn equal_hash(&self, labels: &Labels) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for l in &self.equal {
            labels.get(l).hash(&mut h);
        }
        h.finish()
    }
}

/// Firing alerts as inhibition sources, indexed per rule by the values of
/// its `equal` labels: whether an alert is inhibited is one lookup per rule,
/// not a scan of every firing alert (tens of thousands on a large fleet,
/// for each alert of each notification).
pub struct Inhibition<'a> {
    rules: Vec<(&'a InhibitRule, HashMap<u64, Vec<&'a Labels>>)>,
}

impl<'a> Inhibition<'a> {
    pub fn new(rules: &'a [InhibitRule], sources: impl IntoIterator<Item = &'a Labels>) -> Self {
        let mut index: Vec<_> = rules.iter().map(|r| (r, HashMap::<u64, Vec<&Labels>>::new())).collect();
        if !index.is_empty() {
            for labels in sources {
                for (r, by) in index.iter_mut().filter(|(r, _)| all_match(&r.source_matchers, labels)) {
                    by.entry(r.equal_hash(labels)).or_default().push(labels);
                }
            }
        }
        Inhibition { rules: index }
    }

    /// Whether a source mutes `target`.
    pub fn inhibits(&self, target: &Labels) -> bool {
        self.rules.iter().any(|(r, by)| {
            all_match(&r.target_matchers, target)
                && by.get(&r.equal_hash(target)).is_some_and(|sources| sources.iter().any(|s| r.inhibits(s, target)))
        })
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

    /// The index answers as every rule against every source would.
    #[test]
    fn indexed_inhibition_agrees_with_trying_every_source() {
        let rules: Vec<InhibitRule> = serde_yaml::from_str(
            "[{source_matchers: [alertname=host_down], target_matchers: [severity=~\"high|low\"], equal: [asset, env]},\n               {source_matchers: [severity=critical], target_matchers: [severity=low], equal: []}]",
        )
        .unwrap();
        let mut all = Vec::new();
        for (i, name) in ["host_down", "probe_failed", "sshd"].iter().enumerate() {
            for asset in ["a", "b", "c"] {
                for env in ["prod", "dev"] {
                    let severity = ["critical", "high", "low"][(i + asset.len() + env.len()) % 3];
                    let mut labels = l(&[("alertname", name), ("asset", asset), ("severity", severity)]);
                    if env != "dev" {
                        labels.insert("env".into(), env.into());
                    }
                    all.push(labels);
                }
            }
        }
        for n in [0, 1, 5, all.len()] {
            let sources = &all[..n];
            let index = Inhibition::new(&rules, sources);
            for target in &all {
                let expected = rules.iter().any(|r| sources.iter().any(|s| r.inhibits(s, target)));
                assert_eq!(index.inhibits(target), expected, "{n} sources, target {target:?}");
            }
        }
        assert!(all.iter().any(|t| Inhibition::new(&rules, &all).inhibits(t)), "the cases include inhibited targets");
    }
}
