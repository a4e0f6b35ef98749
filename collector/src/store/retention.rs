//! Retention: whole monthly partitions dropped once every day in them is
//! older than their table's retention (evidence 7 years by default, raw
//! probe results 90 days, rollups and scores kept). A plan is computed
//! first, so `retention --dry-run` shows exactly what would go.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// The `retention` section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Drop expired partitions every day (on the collector running
    /// fleet-wide work); `false`: only with `driftwatch-collector retention`.
    pub enforce: bool,
    /// Days to keep, per table; `null` keeps a table forever. Tables not
    /// listed keep their defaults (see [`default_days`]).
    pub days: BTreeMap<String, Option<u32>>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { enforce: true, days: BTreeMap::new() }
    }
}

/// Seven years (evidence), in days.
const EVIDENCE_DAYS: u32 = 2557;

/// Every partitioned table and its default retention (`None`: kept).
pub fn default_days() -> BTreeMap<&'static str, Option<u32>> {
    let evidence = [
        "snapshots",
        "facts",
        "audit_events",
        "evaluations",
        "violations",
        "drift_events",
        "confirmations",
        "evidence_chain",
        "evidence_roots",
        "api_audit",
        "notification_log",
        "attestations",
        "attestation_files",
        "gap_events",
    ];
    let mut m: BTreeMap<&'static str, Option<u32>> = evidence.into_iter().map(|t| (t, Some(EVIDENCE_DAYS))).collect();
    m.insert("sla_measurements", Some(90));
    // Rollups and derived history are small and kept; silences and
    // waivers are configuration with history.
    for kept in ["sla_minutes", "scores", "silences", "waivers"] {
        m.insert(kept, None);
    }
    m
}

impl RetentionConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        let known = default_days();
        for (t, d) in &self.days {
            if !known.contains_key(t.as_str()) {
                problems
                    .push(format!("retention.days.{t}: no such table (known: {})", known.keys().copied().collect::<Vec<_>>().join(", ")));
            }
            if *d == Some(0) {
                problems.push(format!("retention.days.{t}: must be at least 1 (null keeps the table forever)"));
            }
        }
    }

    /// The retention of every table, with overrides applied.
    pub fn effective(&self) -> BTreeMap<String, Option<u32>> {
        let mut m: BTreeMap<String, Option<u32>> = default_days().into_iter().map(|(t, d)| (t.to_string(), d)).collect();
        for (t, d) in &self.days {
            m.insert(t.clone(), *d);
        }
        m
    }
}

/// A partition to drop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expired {
    pub table: String,
    /// `YYYYMM`.
    pub partition: String,
    pub rows: u64,
    pub retention_days: u32,
}

/// Which of `parts` ((table, YYYYMM partition, rows)) are entirely older
/// than their table's retention at `now`: the month's last day is before
/// the cutoff.
pub fn plan(parts: &[(String, String, u64)], retention: &BTreeMap<String, Option<u32>>, now: DateTime<Utc>) -> Vec<Expired> {
    let mut rows: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (t, p, n) in parts {
        *rows.entry((t.clone(), p.clone())).or_default() += n;
    }
    rows.into_iter()
        .filter_map(|((table, partition), rows)| {
            let days = (*retention.get(&table)?)?;
            let ym: u32 = partition.parse().ok()?;
            let (y, m) = ((ym / 100) as i32, ym % 100);
            let next_month = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1)? } else { NaiveDate::from_ymd_opt(y, m + 1, 1)? };
            let cutoff = (now - chrono::Duration::days(i64::from(days))).date_naive();
            (next_month <= cutoff).then_some(Expired { table, partition, rows, retention_days: days })
        })
        .collect()
}

/// Expiry of old data, by whole months.
#[async_trait::async_trait]
pub trait Retention {
    /// The months of this store's tables that retention would drop.
    async fn retention_plan(&self, cfg: &RetentionConfig, now: DateTime<Utc>) -> Result<Vec<Expired>, StoreError>;

    /// Drops the planned months.
    async fn drop_partitions(&self, expired: &[Expired]) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn only_months_entirely_past_the_retention_are_dropped() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let parts = vec![
            ("sla_measurements".to_string(), "202607".to_string(), 10),
            ("sla_measurements".to_string(), "202608".to_string(), 5),
            ("sla_measurements".to_string(), "202608".to_string(), 5),
            ("sla_measurements".to_string(), "202609".to_string(), 7),
            ("sla_minutes".to_string(), "201801".to_string(), 3),
            ("evaluations".to_string(), "201910".to_string(), 4),
            ("evaluations".to_string(), "201911".to_string(), 4),
            ("unknown".to_string(), "200001".to_string(), 1),
        ];
        let cfg = RetentionConfig::default();
        let p = plan(&parts, &cfg.effective(), now);
        // 90 days before 2026-11-23 is 2026-08-25: July is over; August still has days to keep.
        // Seven years (2557 days) before is 2019-11-23: October 2019 is over.
        let got: Vec<(&str, &str, u64)> = p.iter().map(|e| (e.table.as_str(), e.partition.as_str(), e.rows)).collect();
        assert_eq!(got, vec![("evaluations", "201910", 4), ("sla_measurements", "202607", 10)]);
        let mut keep = cfg.clone();
        keep.days.insert("sla_measurements".into(), None);
        assert!(plan(&parts, &keep.effective(), now).iter().all(|e| e.table != "sla_measurements"));
        let mut problems = Vec::new();
        RetentionConfig { enforce: true, days: [("evaluation".to_string(), Some(1))].into() }.validate(&mut problems);
        assert!(problems[0].starts_with("retention.days.evaluation: no such table"), "{problems:?}");
    }
}
