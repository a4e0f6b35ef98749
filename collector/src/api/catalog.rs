//! `/api/v1/frameworks` (each framework's requirements and the checks
//! behind them) and `/api/v1/controls` (each control with its results
//! counted by status), from the packs in force.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{unavailable, ApiError, AppState};
use crate::eval::Status;

#[derive(Debug, Serialize)]
pub struct Requirement {
    pub id: String,
    pub controls: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Framework {
    pub key: &'static str,
    pub name: &'static str,
    pub controls: usize,
    pub requirements: Vec<Requirement>,
}

pub async fn frameworks(State(s): State<AppState>) -> Json<Vec<Framework>> {
    let policies = s.policies.borrow().clone();
    let out = crate::policy::frameworks::FRAMEWORKS
        .iter()
        .map(|f| {
            let mut reqs: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut controls = 0;
            for c in &policies.controls {
                if let Some(ids) = c.control.frameworks.get(f.key) {
                    controls += 1;
                    for id in ids {
                        reqs.entry(id.clone()).or_default().push(c.control.id.clone());
                    }
                }
            }
            Framework {
                key: f.key,
                name: f.name,
                controls,
                requirements: reqs.into_iter().map(|(id, controls)| Requirement { id, controls }).collect(),
            }
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
        .map(|c| Control {
            id: c.control.id.clone(),
            title: c.control.title.clone(),
            severity: c.control.severity,
            kind: if c.detect.is_some() { "detection" } else { "check" },
            frameworks: c.control.frameworks.clone(),
            results: counts.get(c.control.id.as_str()).cloned().unwrap_or_default(),
        })
        .collect();
    Ok(Json(out))
}
