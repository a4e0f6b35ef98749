//! `/api/v1/frameworks` (each framework's requirements and the checks
//! behind them), `/api/v1/controls` (each control with its results
//! counted by status) and `/api/v1/controls/{id}` (one control's text,
//! remediation included, and the assets where it does not pass), from the
//! packs in force.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{unavailable, ApiError, AppState};
use crate::eval::Status;

#[derive(Debug, Serialize)]
pub struct Requirement {
    pub id: String,
    /// From the framework's catalog (`None`: no catalog).
    pub title: Option<String>,
    /// Its group in the catalog (a SOC 2 criteria series, a CSF category).
    pub group: Option<String>,
    /// The controls mapped to it; none: no automated evidence.
    pub controls: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Framework {
    pub key: &'static str,
    pub name: &'static str,
    pub controls: usize,
    /// Requirements in its catalog (`None`: no catalog; then only the
    /// requirements controls map to are listed).
    pub catalog_requirements: Option<usize>,
    pub requirements: Vec<Requirement>,
}

pub async fn frameworks(State(s): State<AppState>) -> Json<Vec<Framework>> {
    let policies = s.policies.borrow().clone();
    let out = crate::policy::frameworks::FRAMEWORKS
        .iter()
        .map(|f| {
            // Requirement → the controls mapped to it.
            let mut reqs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            let mut controls = 0;
            for c in &policies.controls {
                if let Some(ids) = c.control.frameworks.get(f.key) {
                    controls += 1;
                    for id in ids {
                        reqs.entry(id.as_str()).or_default().push(c.control.id.clone());
                    }
                }
            }
            let catalog = policies.catalogs.get(f.key);
            // Every requirement of the catalog, in its order, mapped or not.
            let requirements = policies
                .requirement_ids(f.key)
                .into_iter()
                .map(|id| {
                    let entry = catalog.and_then(|c| c.requirement(&id));
                    Requirement {
                        title: entry.map(|r| r.title.clone()),
                        group: entry.map(|r| r.group.clone()),
                        controls: reqs.remove(id.as_str()).unwrap_or_default(),
                        id,
                    }
                })
                .collect();
            Framework { key: f.key, name: f.name, controls, catalog_requirements: catalog.map(|c| c.requirements.len()), requirements }
        })
        .collect();
    Json(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlsQuery {
    pub framework: Option<String>,
    pub severity: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Control {
    pub id: String,
    pub title: String,
    pub severity: crate::policy::Severity,
    /// `check` (facts) or `detection` (audit or probe records).
    pub kind: &'static str,
    pub frameworks: BTreeMap<String, Vec<String>>,
    /// What to do where it fails.
    pub remediation: String,
    /// Assets per status, now.
    pub results: BTreeMap<Status, usize>,
}

pub async fn controls(State(s): State<AppState>, Query(q): Query<ControlsQuery>) -> Result<Json<Vec<Control>>, ApiError> {
    let results = s.store.current_results().await.map_err(unavailable)?;
    let mut counts: BTreeMap<&str, BTreeMap<Status, usize>> = BTreeMap::new();
    for r in &results {
        *counts.entry(r.control_id.as_str()).or_default().entry(r.status).or_default() += 1;
    }
    let policies = s.policies.borrow().clone();
    let out = policies
        .controls
        .iter()
        .filter(|c| q.framework.as_ref().is_none_or(|f| c.control.frameworks.contains_key(f)))
        .filter(|c| q.severity.as_ref().is_none_or(|sv| c.control.severity.as_str() == sv))
        .map(|c| Control::of(c, counts.get(c.control.id.as_str()).cloned().unwrap_or_default()))
        .collect();
    Ok(Json(out))
}

impl Control {
    fn of(c: &crate::policy::CompiledControl, results: BTreeMap<Status, usize>) -> Control {
        Control {
            id: c.control.id.clone(),
            title: c.control.title.clone(),
            severity: c.control.severity,
            kind: c.kind(),
            frameworks: c.control.frameworks.clone(),
            remediation: c.control.remediation.clone(),
            results,
        }
    }
}

/// One control as its page shows it: what it checks and why, how to fix
/// it ([`Control::remediation`]), and each asset where it does not pass now.
#[derive(Debug, Serialize)]
pub struct ControlDetail {
    #[serde(flatten)]
    pub control: Control,
    pub description: String,
    pub rationale: String,
    /// Equivalent rules elsewhere (`ssg`, `cis`, …).
    pub references: BTreeMap<String, String>,
    /// Assets where it fails, is unknown or errs, the longest failing first.
    pub not_passing: Vec<NotPassing>,
}

#[derive(Debug, Serialize)]
pub struct NotPassing {
    pub asset_id: String,
    pub status: Status,
    pub since: chrono::DateTime<chrono::Utc>,
}

pub async fn control(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<ControlDetail>, ApiError> {
    let policies = s.policies.borrow().clone();
    let Some((_, c)) = policies.get(&id) else {
        return Err(ApiError(axum::http::StatusCode::NOT_FOUND, format!("no control {id:?} in the packs in force")));
    };
    let results = s.store.current_results().await.map_err(unavailable)?;
    let mut counts = BTreeMap::new();
    let mut not_passing = Vec::new();
    for r in results.into_iter().filter(|r| r.control_id == id) {
        *counts.entry(r.status).or_default() += 1;
        if !matches!(r.status, Status::Pass | Status::Waived | Status::NotApplicable) {
            not_passing.push(NotPassing { asset_id: r.asset_id, status: r.status, since: r.since });
        }
    }
    not_passing.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.asset_id.cmp(&b.asset_id)));
    let k = &c.control;
    Ok(Json(ControlDetail {
        control: Control::of(c, counts),
        description: k.description.clone(),
        rationale: k.rationale.clone(),
        references: k.references.clone(),
        not_passing,
    }))
}
