//! SLOs and SLAs over the agents' probe results, as the SRE workbook
//! recommends: an SLI (availability: share of successful probes; latency:
//! share of probes answered within a bound), an objective over a rolling
//! window, the error budget left, and burn rates over several windows with
//! the multi-window, multi-burn-rate alert rules. A contractual SLA adds
//! service-credit tiers.
//!
//! Everything here is pure; [`crate::tasks::slo`] reads the minute rollups
//! from the store, calls [`Status::compute`] and turns the conditions of
//! [`conditions`] into alerts.

pub mod conditions;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Latency bounds the minute rollups count (a latency SLO picks one).
pub const LATENCY_BOUNDS_MS: [u64; 7] = [50, 100, 250, 500, 1000, 2500, 5000];

/// One SLO, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// The service, e.g. `checkout`; a label of its alerts.
    pub service: String,
    #[serde(default)]
    pub description: String,
    pub sli: SliConfig,
    /// Target, percent (e.g. 99.9).
    pub objective: f64,
    /// Rolling window, e.g. `30d`.
    #[serde(default = "thirty_days")]
    pub window: String,
    pub sla: Option<SlaConfig>,
    /// Extra labels for this SLO's alerts (`team`, …).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl SloConfig {
    /// The latency a good probe answers within, for a latency SLI (the
    /// store's minutes count good results by it); `None`: availability.
    pub fn latency_ms(&self) -> Option<u64> {
        match self.sli.kind {
            SliKind::Availability => None,
            SliKind::Latency => Some(self.sli.latency_ms.unwrap_or(5000)),
        }
    }
}

fn thirty_days() -> String {
    "30d".into()
}

/// How the SLI is measured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliConfig {
    pub kind: SliKind,
    /// Probe ids (as in the agents' `probes`) whose results count.
    pub probes: Vec<String>,
    /// For latency: the bound a good probe answers within (one of
    /// [`LATENCY_BOUNDS_MS`]).
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SliKind {
    Availability,
    Latency,
}

/// A contractual SLA: its objective and the credits owed below it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Percent over the SLO's window; missing it is a breach.
    pub objective: f64,
    /// Credit tiers: below `below` percent, `credit` percent is due.
    #[serde(default)]
    pub credits: Vec<CreditTier>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreditTier {
    pub below: f64,
    pub credit: f64,
}

impl SloConfig {
    pub fn window(&self) -> Duration {
        humantime::parse_duration(&self.window).ok().and_then(|d| Duration::from_std(d).ok()).unwrap_or(Duration::days(30))
    }

    /// Problems, each naming its field under `at`.
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut e = Vec::new();
        if self.service.trim().is_empty() {
            e.push(format!("{at}.service: must not be empty"));
        }
        if !(self.objective > 0.0 && self.objective < 100.0) {
            e.push(format!("{at}.objective: {} must be a percentage between 0 and 100 (exclusive)", self.objective));
        }
        match humantime::parse_duration(&self.window) {
            Ok(d) if d >= std::time::Duration::from_secs(3600) => {}
            Ok(_) => e.push(format!("{at}.window: {:?} is shorter than an hour", self.window)),
            Err(err) => e.push(format!("{at}.window: {:?}: {err}", self.window)),
        }
        if self.sli.probes.is_empty() {
            e.push(format!("{at}.sli.probes: name at least one probe id"));
        }
        match (self.sli.kind, self.sli.latency_ms) {
            (SliKind::Latency, None) => e.push(format!("{at}.sli.latency_ms: a latency SLI needs a bound (one of {LATENCY_BOUNDS_MS:?})")),
            (SliKind::Latency, Some(ms)) if !LATENCY_BOUNDS_MS.contains(&ms) => {
                e.push(format!("{at}.sli.latency_ms: {ms} is not one of the rollup bounds {LATENCY_BOUNDS_MS:?}"))
            }
            (SliKind::Availability, Some(_)) => e.push(format!("{at}.sli.latency_ms: only for kind: latency")),
            _ => {}
        }
        if let Some(sla) = &self.sla {
            if !(sla.objective > 0.0 && sla.objective < 100.0) {
                e.push(format!("{at}.sla.objective: {} must be a percentage between 0 and 100", sla.objective));
            }
            for (i, t) in sla.credits.iter().enumerate() {
                if !(t.below > 0.0 && t.below <= 100.0 && t.credit >= 0.0 && t.credit <= 100.0) {
                    e.push(format!("{at}.sla.credits[{i}]: below and credit are percentages"));
                }
            }
        }
        e
    }
}

pub use crate::store::slo::Minute;

/// A burn-rate rule: both windows must burn faster than `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRule {
    pub long: Duration,
    pub short: Duration,
    pub factor: f64,
    /// `page` or `ticket`.
    pub action: &'static str,
}

/// The SRE workbook's multi-window, multi-burn-rate rules for a 30-day SLO.
pub fn burn_rules() -> [BurnRule; 4] {
    [
        BurnRule { long: Duration::hours(1), short: Duration::minutes(5), factor: 14.4, action: "page" },
        BurnRule { long: Duration::hours(6), short: Duration::minutes(30), factor: 6.0, action: "page" },
        BurnRule { long: Duration::days(1), short: Duration::hours(2), factor: 3.0, action: "ticket" },
        BurnRule { long: Duration::days(3), short: Duration::hours(6), factor: 1.0, action: "ticket" },
    ]
}

/// A window's name, e.g. `1h`, `30m`, `3d`.
pub fn window_name(d: Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Where an SLO stands.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub service: String,
    pub kind: SliKind,
    pub objective: f64,
    pub window: String,
    /// Percent over the window; `None` without data.
    pub sli: Option<f64>,
    /// Share of the error budget left (1 = untouched, ≤ 0 = spent).
    pub budget_remaining: Option<f64>,
    /// Burn rate per window name (1 = spending exactly the budget).
    pub burn_rates: BTreeMap<String, Option<f64>>,
    /// Burn-rate rules that hold now, as `long/short` with their action.
    pub burning: Vec<(String, &'static str)>,
    /// The SLA is missed over the window.
    pub sla_breached: bool,
    /// Percent of the fees credited for the SLA (the highest tier reached).
    pub credit_due: Option<f64>,
    pub probes_total: u64,
}

fn sli_over(minutes: &[Minute], since: DateTime<Utc>) -> (u64, u64) {
    minutes.iter().filter(|m| m.at >= since).fold((0, 0), |(t, g), m| (t + m.total, g + m.good))
}

impl Status {
    /// The SLO's status at `now` from its minutes.
    pub fn compute(slo: &SloConfig, minutes: &[Minute], now: DateTime<Utc>) -> Status {
        let budget = 1.0 - slo.objective / 100.0;
        let ratio = |since| {
            let (t, g) = sli_over(minutes, since);
            (t > 0).then(|| g as f64 / t as f64)
        };
        let burn = |d: Duration| ratio(now - d).map(|r| (1.0 - r) / budget);
        let mut burn_rates = BTreeMap::new();
        let mut burning = Vec::new();
        for r in burn_rules() {
            let (l, s) = (burn(r.long), burn(r.short));
            burn_rates.insert(window_name(r.long), l);
            burn_rates.insert(window_name(r.short), s);
            if l.is_some_and(|l| l > r.factor) && s.is_some_and(|s| s > r.factor) {
                burning.push((format!("{}/{}", window_name(r.long), window_name(r.short)), r.action));
            }
        }
        let window = slo.window();
        let sli = ratio(now - window).map(|r| r * 100.0);
        let budget_remaining = sli.map(|s| 1.0 - (100.0 - s) / (100.0 - slo.objective));
        let (sla_breached, credit_due) = match (&slo.sla, sli) {
            (Some(sla), Some(s)) => {
                let credit = sla
                    .credits
                    .iter()
                    .filter(|t| s < t.below)
                    .map(|t| t.credit)
                    .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))));
                (s < sla.objective, credit)
            }
            _ => (false, None),
        };
        Status {
            service: slo.service.clone(),
            kind: slo.sli.kind,
            objective: slo.objective,
            window: slo.window.clone(),
            sli,
            budget_remaining,
            burn_rates,
            burning,
            sla_breached,
            credit_due,
            probes_total: sli_over(minutes, now - window).0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo() -> SloConfig {
        serde_yaml::from_str(
            "service: web\nsli: {kind: availability, probes: [web]}\nobjective: 99.9\nwindow: 30d\nsla: {objective: 99.5, credits: [{below: 99.9, credit: 10}, {below: 99.0, credit: 25}]}",
        )
        .unwrap()
    }

    /// `n` minutes ending at `now`, each with 60 probes and `bad` failures.
    fn minutes(now: DateTime<Utc>, n: i64, bad: u64) -> Vec<Minute> {
        (0..n).map(|i| Minute { at: now - Duration::minutes(i), total: 60, good: 60 - bad }).collect()
    }

    #[test]
    fn a_healthy_service_burns_nothing() {
        let now = Utc::now();
        let s = Status::compute(&slo(), &minutes(now, 3 * 1440, 0), now);
        assert_eq!(s.sli, Some(100.0));
        assert_eq!(s.budget_remaining, Some(1.0));
        assert!(s.burning.is_empty());
        assert!(!s.sla_breached && s.credit_due.is_none());
    }

    #[test]
    fn a_fast_burn_pages_on_both_windows_only() {
        let now = Utc::now();
        // 3 days healthy, then the last 10 minutes fail half their probes.
        let mut m = minutes(now - Duration::minutes(10), 3 * 1440, 0);
        m.extend(minutes(now, 10, 30));
        let s = Status::compute(&slo(), &m, now);
        assert!(s.burn_rates["5m"].unwrap() > 14.4);
        assert!(s.burn_rates["1h"].unwrap() > 14.4, "{:?}", s.burn_rates);
        assert!(s.burning.contains(&("1h/5m".to_string(), "page")), "{:?}", s.burning);
        // One bad minute an hour ago and fine since: the short window clears it.
        let mut m = minutes(now, 3 * 1440, 0);
        m.push(Minute { at: now - Duration::minutes(50), total: 60, good: 0 });
        let s = Status::compute(&slo(), &m, now);
        assert!(!s.burning.iter().any(|(w, _)| w == "1h/5m"), "{:?}", s.burning);
    }

    #[test]
    fn sla_breach_and_the_credit_tier() {
        let now = Utc::now();
        // 2 % failures over the window: SLI 98 % < 99.5 % → breach, below 99.0 → 25 %.
        let m: Vec<Minute> = (0..1440).map(|i| Minute { at: now - Duration::minutes(i), total: 50, good: 49 }).collect();
        let s = Status::compute(&slo(), &m, now);
        assert!((s.sli.unwrap() - 98.0).abs() < 1e-9);
        assert!(s.sla_breached);
        assert_eq!(s.credit_due, Some(25.0));
        assert!(s.budget_remaining.unwrap() < 0.0, "budget overspent");
    }

    #[test]
    fn window_names_are_compact() {
        let names: Vec<String> = burn_rules().iter().flat_map(|r| [window_name(r.long), window_name(r.short)]).collect();
        assert_eq!(names, vec!["1h", "5m", "6h", "30m", "1d", "2h", "3d", "6h"]);
    }

    #[test]
    fn no_data_is_not_a_pass() {
        let s = Status::compute(&slo(), &[], Utc::now());
        assert_eq!((s.sli, s.budget_remaining), (None, None));
        assert!(!s.sla_breached);
    }

    #[test]
    fn validation_names_fields() {
        let mut bad = slo();
        bad.objective = 100.0;
        bad.sli.kind = SliKind::Latency;
        bad.sli.latency_ms = Some(300);
        let e = bad.validate("slos[0]");
        assert!(e.iter().any(|m| m.starts_with("slos[0].objective")), "{e:?}");
        assert!(e.iter().any(|m| m.starts_with("slos[0].sli.latency_ms: 300")), "{e:?}");
    }
}
