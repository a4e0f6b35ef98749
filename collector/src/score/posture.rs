//! Posture conditions (opt-in: `alerts.posture`): a framework's fleet score
//! below a floor (`posture_below_floor`), or fallen by more than some
//! points from its highest within a window, a day by default
//! (`posture_dropped`). The scores task raises and resolves them as every
//! condition is ([`crate::tasks::conditions`]), after each recording.
//!
//! The window's scores are those the scores task computed in this process
//! since it last became the leader ([`History`]): a drop that spans a
//! change of leader is measured from the new leader's first score.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::Score;
use crate::alert::matcher::Labels;
use crate::alert::model::Alert;

/// The alert names these conditions own.
pub const ALERTNAMES: [&str; 2] = ["posture_below_floor", "posture_dropped"];

/// The `alerts.posture` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostureAlerts {
    /// `posture_below_floor` holds while a framework's fleet score
    /// (waivers honoured) is below this, 0–100.
    pub min_score: f64,
    /// `posture_dropped` holds while the score is more than this many
    /// points below its highest within the window.
    pub max_drop_points: f64,
    pub drop_window_hours: u64,
}

impl Default for PostureAlerts {
    fn default() -> Self {
        PostureAlerts { min_score: 90.0, max_drop_points: 10.0, drop_window_hours: 24 }
    }
}

impl PostureAlerts {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !(0.0..=100.0).contains(&self.min_score) {
            problems.push(format!("alerts.posture.min_score: {} is not within 0–100", self.min_score));
        }
        if !(self.max_drop_points > 0.0 && self.max_drop_points <= 100.0) {
            problems.push(format!("alerts.posture.max_drop_points: {} is not within (0, 100]", self.max_drop_points));
        }
        if self.drop_window_hours == 0 || self.drop_window_hours > 24 * 31 {
            problems.push(format!("alerts.posture.drop_window_hours: {} is not within 1–744", self.drop_window_hours));
        }
    }

    fn window(&self) -> Duration {
        Duration::hours(self.drop_window_hours.min(24 * 31) as i64)
    }
}

/// The fleet scores seen within the window, per framework.
#[derive(Debug, Default)]
pub struct History(BTreeMap<String, VecDeque<(DateTime<Utc>, f64)>>);

impl History {
    /// Adds the fleet scores of a recording and forgets what fell out of
    /// the window (and frameworks no longer scored).
    pub fn record(&mut self, scores: &[Score], cfg: &PostureAlerts, now: DateTime<Utc>) {
        let since = now - cfg.window();
        self.0.retain(|fw, _| scores.iter().any(|s| &s.framework == fw));
        for s in scores.iter().filter(|s| s.group == "fleet") {
            let points = self.0.entry(s.framework.clone()).or_default();
            points.push_back((now, s.score));
            while points.front().is_some_and(|(at, _)| *at < since) {
                points.pop_front();
            }
        }
    }

    /// The highest score of `framework` within the window.
    fn peak(&self, framework: &str) -> Option<f64> {
        self.0.get(framework)?.iter().map(|(_, s)| *s).reduce(f64::max)
    }
}

/// The conditions that hold for the fleet `scores` just recorded.
pub fn conditions(scores: &[Score], history: &History, cfg: &PostureAlerts, now: DateTime<Utc>) -> Vec<Alert> {
    let mut out = Vec::new();
    for s in scores.iter().filter(|s| s.group == "fleet") {
        let name = crate::policy::frameworks::framework(&s.framework).map_or(s.framework.as_str(), |(f, _)| f.name);
        let coverage = match s.coverage {
            Some(c) => format!("coverage {c:.1}%: the score is over the assessed requirements"),
            None => "no catalog: the score is over the requirements checks map to".into(),
        };
        if s.score < cfg.min_score {
            out.push(alert(
                "posture_below_floor",
                "medium",
                &s.framework,
                format!("{name} score {:.1} is below {:.1}", s.score, cfg.min_score),
                &[("score", format!("{:.2}", s.score)), ("floor", format!("{:.2}", cfg.min_score)), ("coverage", coverage.clone())],
                now,
            ));
        }
        if let Some(peak) = history.peak(&s.framework).filter(|p| p - s.score > cfg.max_drop_points) {
            out.push(alert(
                "posture_dropped",
                "high",
                &s.framework,
                format!("{name} score fell {:.1} points to {:.1} within {}h", peak - s.score, s.score, cfg.drop_window_hours),
                &[("score", format!("{:.2}", s.score)), ("peak", format!("{peak:.2}")), ("coverage", coverage)],
                now,
            ));
        }
    }
    out
}

fn alert(name: &str, severity: &str, framework: &str, summary: String, annotations: &[(&str, String)], now: DateTime<Utc>) -> Alert {
    let labels: Labels = [("alertname", name), ("severity", severity), ("framework", framework)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut ann: BTreeMap<String, String> = annotations.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    ann.insert("summary".into(), summary);
    ann.insert(
        "remediation".into(),
        format!("driftwatch-collector gaps --framework {framework} lists what fails, soonest due first, with the fix for each."),
    );
    Alert::condition(labels, ann, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(framework: &str, score: f64) -> Score {
        Score {
            framework: framework.into(),
            group: "fleet".into(),
            applicable: 10,
            passing: 0,
            partial: 0,
            failing: 0,
            waived: 0,
            score,
            score_without_waivers: score,
            score_weighted: score,
            catalog_requirements: Some(61),
            not_assessed: Some(51),
            coverage: Some(16.39),
            attested: Some(0),
        }
    }

    #[test]
    fn below_the_floor_and_a_drop_within_the_window_hold() {
        let cfg = PostureAlerts::default();
        let mut h = History::default();
        let t0 = Utc::now() - Duration::hours(30);
        // 99 thirty hours ago (out of the window by now), 96 two hours ago, 84 now.
        for (at, score) in [(t0, 99.0), (t0 + Duration::hours(28), 96.0)] {
            h.record(&[fleet("soc2", score)], &cfg, at);
        }
        let now = t0 + Duration::hours(30);
        let scores = [fleet("soc2", 84.0)];
        h.record(&scores, &cfg, now);
        let alerts = conditions(&scores, &h, &cfg, now);
        let names: Vec<&str> = alerts.iter().map(|a| a.labels["alertname"].as_str()).collect();
        assert_eq!(names, ["posture_below_floor", "posture_dropped"]);
        assert_eq!(alerts[1].annotations["peak"], "96.00", "the 99 fell out of the 24h window");
        assert!(alerts[0].annotations["summary"].starts_with("SOC 2 (2017 TSC) score 84.0 is below 90.0"), "{:?}", alerts[0].annotations);
        assert!(alerts[0].annotations["coverage"].starts_with("coverage 16.4%"));
        assert_eq!(alerts[0].labels["framework"], "soc2");
        // The same condition is the same alert (one fingerprint) on the next pass.
        let later = conditions(&scores, &h, &cfg, now + Duration::minutes(1));
        assert_eq!(later[0].fingerprint(), alerts[0].fingerprint());
    }

    #[test]
    fn a_small_dip_above_the_floor_holds_nothing_and_bad_settings_are_named() {
        let cfg = PostureAlerts { min_score: 50.0, ..Default::default() };
        let mut h = History::default();
        let now = Utc::now();
        h.record(&[fleet("pci-dss", 70.0)], &cfg, now - Duration::hours(1));
        let scores = [fleet("pci-dss", 65.0)];
        h.record(&scores, &cfg, now);
        assert!(conditions(&scores, &h, &cfg, now).is_empty());
        let mut problems = Vec::new();
        PostureAlerts { min_score: 120.0, max_drop_points: 0.0, drop_window_hours: 0 }.validate(&mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("alerts.posture.min_score"));
    }
}
