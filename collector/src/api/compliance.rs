//! `/api/v1/gaps`, `/api/v1/effectiveness`, `/api/v1/evidence` (the stored
//! facts or event behind a result), `/api/v1/reports` and `/api/v1/slos`:
//! the same computations as the CLI's commands of those names; and
//! `/api/v1/policyreports`, the clusters' findings as Kubernetes
//! PolicyReports from the stored results.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{unavailable, ApiError, AppState};
use crate::score::{self, WaiversAt};

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

fn known_framework(f: &str) -> Result<(), ApiError> {
    crate::policy::frameworks::framework(f).map(|_| ()).ok_or_else(|| bad(format!("framework: {f:?} is not a known framework")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapsQuery {
    pub framework: Option<String>,
    pub asset: Option<String>,
    pub owner: Option<String>,
    /// At or above.
    pub severity: Option<String>,
    /// Tracking state: open, in_progress, risk_accepted, resolved.
    pub state: Option<String>,
    pub assignee: Option<String>,
}

pub async fn gaps(State(s): State<AppState>, Query(q): Query<GapsQuery>) -> Result<Json<Vec<score::Gap>>, ApiError> {
    let min_severity = match &q.severity {
        Some(v) => Some(v.parse::<crate::policy::Severity>().map_err(|e| bad(format!("severity: {e}")))?),
        None => None,
    };
    let state = match &q.state {
        Some(v) => Some(v.parse::<score::tracking::GapState>().map_err(|e| bad(format!("state: {e}")))?),
        None => None,
    };
    let results = s.store.current_results().await.map_err(unavailable)?;
    let tracked = score::tracking::latest(&s.store.gap_events().await.map_err(unavailable)?);
    let (policies, waivers) = (s.policies.borrow().clone(), s.waivers.borrow().clone());
    let now = Utc::now();
    let filter =
        score::GapFilter { asset: q.asset.as_deref(), owner: q.owner.as_deref(), min_severity, state, assignee: q.assignee.as_deref() };
    Ok(Json(filter.gaps(&policies, &results, q.framework.as_deref(), WaiversAt { waivers: &waivers, at: now }, now, &tracked)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    pub framework: Option<String>,
    pub asset: Option<String>,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub format: Option<crate::report::render::Format>,
}

fn period(q: &PeriodQuery) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = q.to.unwrap_or_else(Utc::now);
    if q.from >= to {
        return Err(bad(format!("from ({}) must be before to ({to})", q.from)));
    }
    Ok((q.from, to))
}

pub async fn effectiveness(
    State(s): State<AppState>,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<Vec<score::effectiveness::Effectiveness>>, ApiError> {
    let (from, to) = period(&q)?;
    let mut histories = s.store.histories(from, to).await.map_err(unavailable)?;
    if let Some(a) = &q.asset {
        histories.retain(|h| &h.asset_id == a);
    }
    let policies = s.policies.borrow().clone();
    Ok(Json(score::effectiveness::compute(&policies, &histories, q.framework.as_deref(), from, to)))
}

pub async fn report(State(s): State<AppState>, Query(q): Query<PeriodQuery>) -> Result<Response, ApiError> {
    let (from, to) = period(&q)?;
    let framework = q.framework.clone().ok_or_else(|| bad("framework: required".into()))?;
    known_framework(&framework)?;
    let (policies, waivers) = (s.policies.borrow().clone(), s.waivers.borrow().clone());
    let inputs = crate::report::gather(&s.store, &policies, &waivers, &framework, from, to).await.map_err(unavailable)?;
    let format = q.format.unwrap_or(crate::report::render::Format::Json);
    let body = crate::report::render::render(&crate::report::build(&inputs, Utc::now()), format);
    Ok(([("content-type", format.content_type())], body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    pub asset: String,
    pub control: String,
    pub at: Option<DateTime<Utc>>,
}

/// The evaluation behind a result, the facts it read, and for a detection
/// the record that fired it.
#[derive(Debug, Serialize)]
pub struct Evidence {
    pub asset_id: String,
    pub control_id: String,
    pub status: String,
    pub evaluated_at: DateTime<Utc>,
    /// The snapshot (or, for a detection, the record) evaluated.
    pub snapshot_id: String,
    pub sequence: i64,
    pub facts: serde_json::Value,
    pub message: String,
    /// The stored batch (see `verify`).
    pub batch_id: String,
    pub audit_event: Option<crate::store::rows::AuditRow>,
}

pub async fn evidence(State(s): State<AppState>, Query(q): Query<EvidenceQuery>) -> Result<Json<Evidence>, ApiError> {
    let at = q.at.unwrap_or_else(Utc::now);
    let e = s
        .store
        .evaluation_at(&q.asset, &q.control, at)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no evaluation of {} on {} at or before {at}", q.control, q.asset)))?;
    let audit_event = s.store.audit_event(&q.asset, &e.snapshot_id).await.map_err(unavailable)?;
    Ok(Json(Evidence {
        facts: serde_json::from_str(&e.evidence).unwrap_or_default(),
        evaluated_at: crate::store::time(e.at),
        asset_id: e.asset_id,
        control_id: e.control_id,
        status: e.status,
        snapshot_id: e.snapshot_id,
        sequence: e.sequence,
        message: e.message,
        batch_id: e.batch_id,
        audit_event,
    }))
}

pub async fn slos(State(s): State<AppState>) -> Result<Json<Vec<crate::slo::Status>>, ApiError> {
    let now = Utc::now();
    let statuses = crate::tasks::slo::statuses(&s.slo, &s.store, now).await.map_err(unavailable)?;
    Ok(Json(statuses.into_iter().map(|(_, st)| st).collect()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyReportsQuery {
    /// One cluster asset; every cluster without it.
    pub cluster: Option<String>,
}

/// Every cluster's findings as `wgpolicyk8s.io/v1alpha2` reports in a
/// `v1` `List` (`curl … | kubectl apply -f -`).
pub async fn policyreports(State(s): State<AppState>, Query(q): Query<PolicyReportsQuery>) -> Result<Json<serde_json::Value>, ApiError> {
    let policies = s.policies.borrow().clone();
    let list = crate::report::policyreport::stored(&s.store, &policies, q.cluster.as_deref(), Utc::now()).await.map_err(unavailable)?;
    Ok(Json(list))
}
