//! How evaluation results become the store's rows: an evaluation, a
//! violation opened or resolved, a drift event (the store takes rows and
//! knows nothing of the engine's types).

use crate::store::rows::{millis, ConfirmationRow, DriftRow, EvaluationRow, ViolationRow};
use crate::store::{secs, Batch};

use super::drift::DriftEvent;
use super::{Applied, Evaluation, Transition};

/// Rows of evaluation results, added to the batch being gathered.
impl Batch {
    /// The rows of a snapshot the engine applied. `compact`: only what is
    /// new is stored, the facts that changed and the results that did;
    /// the snapshot's row lists the paths a full snapshot no longer has
    /// and confirms the results that stayed, which leave `applied` (its
    /// evaluations are then the ones to store). Otherwise every fact and
    /// result is stored, as before 0017.
    pub fn add_applied_snapshot(
        &mut self,
        s: &driftwatch_schemas::ConfigSnapshot,
        now: &chrono::DateTime<chrono::Utc>,
        applied: &mut Applied,
        compact: bool,
    ) {
        let novelty = applied.novelty.take().unwrap_or_default();
        let only = if compact { novelty.changed_facts.as_deref() } else { None };
        let row = self.add_snapshot_facts(s, now, only);
        row.facts_digest = novelty.facts_digest.unwrap_or_default();
        if !compact {
            return;
        }
        let mut same = novelty.unchanged.into_iter();
        let (mut controls, mut statuses): (Vec<String>, Vec<String>) =
            novelty.confirmed.into_iter().map(|(c, s)| (c, s.as_str().to_string())).unzip();
        applied.evaluations.retain(|e| {
            let keep = !same.next().unwrap_or(false);
            if !keep {
                controls.push(e.control_id.clone());
                statuses.push(e.status.as_str().to_string());
            }
            keep
        });
        let removed_paths = if novelty.changed_facts.is_some() { novelty.removed } else { Vec::new() };
        if controls.is_empty() && removed_paths.is_empty() {
            return;
        }
        self.confirmations.push(ConfirmationRow {
            asset_id: s.asset.id.clone(),
            snapshot_id: s.snapshot_id.clone(),
            sequence: s.sequence,
            collected_at: secs(&s.collected_at),
            collected_ms: millis(&s.collected_at),
            controls,
            statuses,
            removed_paths,
            batch_id: self.batch_id.clone(),
        });
    }

    pub fn add_evaluations(&mut self, evs: Vec<Evaluation>, transitions: &[Transition]) {
        self.evaluations.extend(evs.into_iter().map(|e| evaluation_row(e, &self.batch_id)));
        self.violations.extend(transitions.iter().map(|t| violation_row(t, &self.batch_id)));
    }

    pub fn add_drifts(&mut self, drifts: &[DriftEvent]) {
        self.drifts.extend(drifts.iter().map(|d| drift_row(d, &self.batch_id)));
    }
}

pub fn framework_ids(e: &Evaluation) -> Vec<String> {
    e.frameworks.ids.clone()
}

fn evidence_json(e: &Evaluation) -> String {
    serde_json::to_string(&e.evidence).unwrap_or_default()
}

/// The row of an evaluation, which it consumes (most are only stored).
pub fn evaluation_row(e: Evaluation, batch_id: &str) -> EvaluationRow {
    EvaluationRow {
        status: e.status.as_str().to_string(),
        severity: e.severity.as_str().to_string(),
        evaluated_at: secs(&e.evaluated_at),
        sequence: e.sequence,
        // In the `controls` catalog instead (a third of a row's bytes).
        frameworks: Vec::new(),
        evidence: evidence_json(&e),
        asset_id: e.asset_id,
        control_id: e.control_id,
        snapshot_id: e.snapshot_id,
        message: e.message.unwrap_or_default(),
        batch_id: batch_id.to_string(),
        evaluated_ms: millis(&e.evaluated_at),
    }
}

pub fn violation_row(t: &Transition, batch_id: &str) -> ViolationRow {
    let e = &t.evaluation;
    ViolationRow {
        violation_id: t.violation_id.clone(),
        asset_id: e.asset_id.clone(),
        control_id: e.control_id.clone(),
        title: e.title.clone(),
        severity: e.severity.as_str().to_string(),
        event: t.kind.as_str().to_string(),
        at: secs(&e.evaluated_at),
        frameworks: framework_ids(e),
        evidence: evidence_json(e),
        batch_id: batch_id.to_string(),
    }
}

pub fn drift_row(d: &DriftEvent, batch_id: &str) -> DriftRow {
    let e = &d.evaluation;
    let c = d.cause.as_ref();
    DriftRow {
        drift_id: d.drift_id.clone(),
        asset_id: e.asset_id.clone(),
        control_id: e.control_id.clone(),
        title: e.title.clone(),
        severity: e.severity.as_str().to_string(),
        direction: d.direction().to_string(),
        from_status: d.from.as_str().to_string(),
        to_status: e.status.as_str().to_string(),
        at: secs(&e.evaluated_at),
        frameworks: framework_ids(e),
        before: serde_json::to_string(&d.before).unwrap_or_default(),
        after: evidence_json(e),
        changed: d.changed.clone(),
        cause_event_id: c.map(|c| c.event_id.clone()).unwrap_or_default(),
        cause_source: c.map(|c| c.source.clone()).unwrap_or_default(),
        cause_action: c.map(|c| c.action.clone()).unwrap_or_default(),
        cause_user: c.and_then(|c| c.user.clone()).unwrap_or_default(),
        cause_object: c.and_then(|c| c.object.clone()).unwrap_or_default(),
        cause_at: c.map(|c| secs(&c.at)).unwrap_or(0),
        cause_matched: c.map(|c| c.matched.clone()).unwrap_or_default(),
        snapshot_id: e.snapshot_id.clone(),
        sequence: e.sequence,
        batch_id: batch_id.to_string(),
    }
}
