//! The SQLite side of [`Views`]: the latest rows per group by SQL, the
//! joins of the ClickHouse queries in Rust.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{docs, per_subject, Doc as _, SqliteStore};
use crate::store::rows::{AuditRow, ConfirmationRow, DriftRow, EvaluationRow, SnapshotRow, ViolationRow};
use crate::store::values::Status;
use crate::store::views::{AssetInfo, ControlResult, EvaluationAt, History, LatestStatus, SharedLabels, Views, Violation};
use crate::store::{secs, time, StoreError};

/// A violation's lifecycle, from its rows.
pub(super) struct Life {
    pub first: ViolationRow,
    /// When it opened (0: its opening is not stored).
    pub opened_at: u32,
    pub resolved_at: u32,
    pub last_event: String,
}

/// Every violation's lifecycle, by violation id.
pub(super) fn lifecycles(c: &rusqlite::Connection) -> rusqlite::Result<BTreeMap<String, Life>> {
    let mut out: BTreeMap<String, Life> = BTreeMap::new();
    // In time order, so the last row seen is the latest event.
    for r in docs::<ViolationRow>(c, "1", None, &[])? {
        let opened = if r.event == "opened" { r.at } else { 0 };
        let resolved = if r.event == "resolved" { r.at } else { 0 };
        match out.get_mut(&r.violation_id) {
            Some(l) => {
                if opened > 0 && (l.opened_at == 0 || opened < l.opened_at) {
                    l.opened_at = opened;
                    l.first.evidence = r.evidence.clone();
                }
                l.resolved_at = l.resolved_at.max(resolved);
                l.last_event = r.event;
            }
            None => {
                let id = r.violation_id.clone();
                out.insert(id, Life { opened_at: opened, resolved_at: resolved, last_event: r.event.clone(), first: r });
            }
        }
    }
    Ok(out)
}

/// The latest snapshot of every asset (received at or before `until`,
/// seconds), and its latest collection time.
pub(super) fn latest_snapshots(c: &rusqlite::Connection, until: Option<u32>) -> rusqlite::Result<BTreeMap<String, (SnapshotRow, u32)>> {
    let until = i64::from(until.unwrap_or(u32::MAX)) * 1000 + 999;
    let collected: BTreeMap<String, i64> =
        per_subject(c, "SELECT asset_id, '', max(at) FROM rows WHERE tbl = 'snapshots' AND ord <= ?1 GROUP BY asset_id", &[&until])?
            .into_iter()
            .map(|(a, _, t)| (a, t))
            .collect();
    Ok(docs::<SnapshotRow>(c, "ord <= ?1", Some("asset_id"), &[&until])?
        .into_iter()
        .map(|s| {
            let at = collected.get(&s.asset_id).copied().unwrap_or_default().clamp(0, i64::from(u32::MAX)) as u32;
            (s.asset_id.clone(), (s, at))
        })
        .collect())
}

pub(super) fn labels(s: &SnapshotRow) -> BTreeMap<String, String> {
    s.label_keys.iter().cloned().zip(s.label_values.iter().cloned()).collect()
}

/// `(asset, control)` → a value, from `per_subject` rows.
fn by_pair(rows: Vec<(String, String, i64)>) -> BTreeMap<(String, String), u32> {
    rows.into_iter().map(|(a, s, v)| ((a, s), v.clamp(0, i64::from(u32::MAX)) as u32)).collect()
}

/// The latest evaluation of every (asset, control) ordered at or before
/// `until` (milliseconds). A later snapshot confirming the result (see
/// [`super::Confirmation`]) is that evaluation: its time, snapshot and
/// sequence, with the stored row's evidence and message.
fn latest_evaluations(c: &rusqlite::Connection, until: i64) -> rusqlite::Result<Vec<EvaluationRow>> {
    let mut rows = docs::<EvaluationRow>(c, "ord <= ?1", Some("asset_id, subject"), &[&until])?;
    if until == i64::MAX {
        confirm_latest(c, &mut rows, None)?;
    } else {
        apply_confirmations(&mut rows, &confirmations_until(c, until, None)?);
    }
    Ok(rows)
}

/// Makes each of `rows` the confirmation of its pair in `confirmed`, if later.
fn apply_confirmations(rows: &mut [EvaluationRow], confirmed: &BTreeMap<(String, String), super::Confirmation>) {
    for e in rows {
        if let Some(k) = confirmed.get(&(e.asset_id.clone(), e.control_id.clone())) {
            k.apply(e);
        }
    }
}

/// Makes each of `rows`, the latest stored evaluation of its pair (of
/// `asset`'s pairs, when given), the latest confirmation of it if later.
pub(super) fn confirm_latest(c: &rusqlite::Connection, rows: &mut [EvaluationRow], asset: Option<&str>) -> rusqlite::Result<()> {
    let a = asset.unwrap_or_default().to_string();
    let confirmed: BTreeMap<(String, String), super::Confirmation> =
        docs::<super::Confirmation>(c, "?1 = '' OR asset_id = ?1", None, &[&a])?
            .into_iter()
            .map(|k| ((k.asset_id.clone(), k.control_id.clone()), k))
            .collect();
    apply_confirmations(rows, &confirmed);
    Ok(())
}

/// The latest confirmation of every (asset, control) (of `asset` only,
/// when given) ordered at or before `until` (milliseconds), from the
/// confirmations rows.
fn confirmations_until(
    c: &rusqlite::Connection,
    until: i64,
    asset: Option<&str>,
) -> rusqlite::Result<BTreeMap<(String, String), super::Confirmation>> {
    let a = asset.unwrap_or_default().to_string();
    let mut out: BTreeMap<(String, String), super::Confirmation> = BTreeMap::new();
    for s in docs::<ConfirmationRow>(c, "ord <= ?1 AND (?2 = '' OR asset_id = ?2)", None, &[&until, &a])? {
        for k in super::Confirmation::of(&s) {
            if k.ord() <= until && out.get(&(k.asset_id.clone(), k.control_id.clone())).is_none_or(|o| o.ord() <= k.ord()) {
                out.insert((k.asset_id.clone(), k.control_id.clone()), k);
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl Views for SqliteStore {
    async fn load_posture(&self) -> Result<Vec<LatestStatus>, StoreError> {
        self.with(|c| {
            let evals = latest_evaluations(c, i64::MAX)?;
            let first = by_pair(per_subject(
                c,
                "SELECT asset_id, subject, min(at) FROM rows WHERE tbl = 'evaluations' GROUP BY asset_id, subject",
                &[],
            )?);
            let changed = by_pair(per_subject(
                c,
                "SELECT asset_id, subject, max(at) FROM rows WHERE tbl = 'drift_events' GROUP BY asset_id, subject",
                &[],
            )?);
            let mut open: BTreeMap<(String, String), (String, u32)> = BTreeMap::new();
            for (id, l) in lifecycles(c)? {
                if l.last_event == "opened" {
                    open.insert((l.first.asset_id.clone(), l.first.control_id.clone()), (id, l.opened_at));
                }
            }
            Ok(evals
                .into_iter()
                .filter_map(|e| {
                    let status = Status::parse(&e.status)?;
                    let pair = (e.asset_id, e.control_id);
                    let violation = open.get(&pair);
                    let changed_at = changed.get(&pair).copied().unwrap_or(0);
                    let opened_at = violation.map_or(0, |v| v.1);
                    let since = if changed_at > 0 {
                        changed_at
                    } else if opened_at > 0 {
                        opened_at
                    } else {
                        first.get(&pair).copied().unwrap_or(e.evaluated_at)
                    };
                    Some(LatestStatus {
                        asset_id: pair.0,
                        control_id: pair.1,
                        status,
                        since: time(since),
                        last_evaluated: time(e.evaluated_at),
                        violation_id: violation.map(|v| v.0.clone()),
                    })
                })
                .collect())
        })
        .await
    }

    async fn current_results(&self) -> Result<Vec<ControlResult>, StoreError> {
        self.with(|c| {
            let evals = latest_evaluations(c, i64::MAX)?;
            let snapshots = latest_snapshots(c, None)?;
            let mut opened: BTreeMap<(String, String), u32> = BTreeMap::new();
            for l in lifecycles(c)?.into_values().filter(|l| l.last_event == "opened") {
                let e = opened.entry((l.first.asset_id.clone(), l.first.control_id.clone())).or_insert(l.opened_at);
                *e = (*e).min(l.opened_at);
            }
            let mut shared = SharedLabels::default();
            Ok(evals
                .into_iter()
                .filter_map(|e| {
                    let status = Status::parse(&e.status)?;
                    let opened_at = opened.get(&(e.asset_id.clone(), e.control_id.clone())).copied().unwrap_or(0);
                    let since = if opened_at > 0 && status == Status::Fail { opened_at } else { e.evaluated_at };
                    let snap = snapshots.get(&e.asset_id);
                    Some(ControlResult {
                        labels: shared.of(&e.asset_id, || snap.map(|s| labels(&s.0)).unwrap_or_default()),
                        evidence_at: snap.filter(|s| s.1 > 0).map(|s| time(s.1)),
                        asset_id: e.asset_id,
                        control_id: e.control_id,
                        status,
                        since: time(since),
                    })
                })
                .collect())
        })
        .await
    }

    async fn results_at(&self, at: DateTime<Utc>) -> Result<Vec<ControlResult>, StoreError> {
        let s = secs(&at);
        // An instant given to the second covers that whole second.
        let ms = if at.timestamp_subsec_millis() == 0 { 999 } else { crate::store::rows::millis(&at) };
        let until = i64::from(s) * 1000 + i64::from(ms);
        self.with(move |c| {
            let snapshots = latest_snapshots(c, Some(s))?;
            let mut shared = SharedLabels::default();
            Ok(latest_evaluations(c, until)?
                .into_iter()
                .filter_map(|e| {
                    let snap = snapshots.get(&e.asset_id);
                    Some(ControlResult {
                        status: Status::parse(&e.status)?,
                        since: time(e.evaluated_at),
                        labels: shared.of(&e.asset_id, || snap.map(|s| labels(&s.0)).unwrap_or_default()),
                        evidence_at: snap.filter(|s| s.1 > 0).map(|s| time(s.1)),
                        asset_id: e.asset_id,
                        control_id: e.control_id,
                    })
                })
                .collect())
        })
        .await
    }

    async fn histories(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<History>, StoreError> {
        let (f, t) = (i64::from(secs(&from)), i64::from(secs(&to)));
        self.with(move |c| {
            let mut map: BTreeMap<(String, String), History> = BTreeMap::new();
            for e in latest_evaluations(c, f * 1000 + 999)? {
                let initial = Status::parse(&e.status);
                map.insert(
                    (e.asset_id.clone(), e.control_id.clone()),
                    History { asset_id: e.asset_id, control_id: e.control_id, initial, changes: Vec::new() },
                );
            }
            for e in docs::<EvaluationRow>(c, "at > ?1 AND at <= ?2", None, &[&f, &t])? {
                let Some(status) = Status::parse(&e.status) else { continue };
                let h = map.entry((e.asset_id.clone(), e.control_id.clone())).or_insert_with(|| History {
                    asset_id: e.asset_id.clone(),
                    control_id: e.control_id.clone(),
                    initial: None,
                    changes: Vec::new(),
                });
                // Change points only, as the ClickHouse store keeps them.
                if h.changes.last().map(|c| c.1).or(h.initial) != Some(status) {
                    h.changes.push((time(e.evaluated_at), status));
                }
            }
            Ok(map.into_values().collect())
        })
        .await
    }

    async fn recent_drifts(&self, asset: Option<&str>, limit: u32) -> Result<Vec<DriftRow>, StoreError> {
        let a = asset.unwrap_or_default().to_string();
        self.with(move |c| {
            let mut rows = docs::<DriftRow>(c, "?1 = '' OR asset_id = ?1", None, &[&a])?;
            rows.sort_by(|x, y| y.at.cmp(&x.at).then_with(|| x.drift_id.cmp(&y.drift_id)));
            rows.truncate(limit as usize);
            Ok(rows)
        })
        .await
    }

    async fn violations(&self) -> Result<Vec<Violation>, StoreError> {
        self.with(|c| {
            let snapshots = latest_snapshots(c, None)?;
            let mut out: Vec<Violation> = lifecycles(c)?
                .into_values()
                .map(|l| Violation {
                    status: if l.last_event == "resolved" { "resolved".into() } else { "open".into() },
                    opened_at: (l.opened_at > 0).then(|| time(l.opened_at)),
                    resolved_at: (l.resolved_at > 0).then(|| time(l.resolved_at)),
                    labels: snapshots.get(&l.first.asset_id).map(|s| labels(&s.0)).unwrap_or_default(),
                    violation_id: l.first.violation_id,
                    asset_id: l.first.asset_id,
                    control_id: l.first.control_id,
                    title: l.first.title,
                    severity: l.first.severity,
                    frameworks: l.first.frameworks,
                })
                .collect();
            out.sort_by(|x, y| y.opened_at.cmp(&x.opened_at).then_with(|| x.violation_id.cmp(&y.violation_id)));
            Ok(out)
        })
        .await
    }

    async fn assets(&self) -> Result<Vec<AssetInfo>, StoreError> {
        self.with(|c| {
            let heartbeats: BTreeMap<String, i64> = per_subject(
                c,
                "SELECT asset_id, '', max(at) FROM rows WHERE tbl = 'sla_measurements' AND subject = 'heartbeat' GROUP BY asset_id",
                &[],
            )?
            .into_iter()
            .map(|(a, _, t)| (a, t))
            .collect();
            let sequences: BTreeMap<String, i64> = per_subject(
                c,
                "SELECT asset_id, '', max(json_extract(doc, '$.sequence')) FROM rows WHERE tbl = 'snapshots' GROUP BY asset_id",
                &[],
            )?
            .into_iter()
            .map(|(a, _, t)| (a, t))
            .collect();
            Ok(latest_snapshots(c, None)?
                .into_values()
                .map(|(s, collected)| AssetInfo {
                    labels: labels(&s),
                    last_snapshot_at: time(collected),
                    last_received_at: time(s.received_at),
                    last_heartbeat_at: heartbeats
                        .get(&s.asset_id)
                        .filter(|t| **t > 0)
                        .map(|t| time((*t).clamp(0, i64::from(u32::MAX)) as u32)),
                    last_sequence: sequences.get(&s.asset_id).copied().unwrap_or(s.sequence),
                    asset_id: s.asset_id,
                    kind: s.asset_kind,
                    hostname: s.hostname,
                    agent_id: s.agent_id,
                    agent_version: s.agent_version,
                })
                .collect())
        })
        .await
    }

    async fn audit_event(&self, asset: &str, id: &str) -> Result<Option<AuditRow>, StoreError> {
        let (a, i) = (asset.to_string(), id.to_string());
        self.with(move |c| Ok(docs::<AuditRow>(c, "asset_id = ?1 AND subject = ?2", None, &[&a, &i])?.into_iter().next())).await
    }

    async fn evaluation_at(&self, asset: &str, control: &str, at: DateTime<Utc>) -> Result<Option<EvaluationAt>, StoreError> {
        let (a, ctl, t) = (asset.to_string(), control.to_string(), i64::from(secs(&at)));
        self.with(move |c| {
            let rows = docs::<EvaluationRow>(c, "asset_id = ?1 AND subject = ?2 AND at <= ?3", Some("asset_id, subject"), &[&a, &ctl, &t])?;
            let confirmed = confirmations_until(c, t * 1000 + 999, Some(&a))?;
            Ok(rows
                .into_iter()
                .next()
                .map(|mut e| {
                    if let Some(k) = confirmed.get(&(a.clone(), ctl.clone())) {
                        k.apply(&mut e);
                    }
                    e
                })
                .map(|e| EvaluationAt {
                    asset_id: e.asset_id,
                    control_id: e.control_id,
                    status: e.status,
                    at: e.evaluated_at,
                    snapshot_id: e.snapshot_id,
                    sequence: e.sequence,
                    evidence: e.evidence,
                    message: e.message,
                    batch_id: e.batch_id,
                }))
        })
        .await
    }
}
