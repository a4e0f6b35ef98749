//! `/api/v1/gaps/{id}/tracking` (POST: assign a gap, move it on, accept its
//! risk with a waiver) and `/api/v1/gaps/{id}/history` (every change): the
//! same tracking as `driftwatch-collector gap`. The list is
//! `/api/v1/gaps` (`compliance.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::{Caller, Scope};
use super::{unavailable, ApiError, AppState};
use crate::policy::Severity;
use crate::score::tracking::{self, Change, GapState, Tracking};

/// A change of a gap's tracking; accepting its risk (`state:
/// risk_accepted`) takes the waiver it makes, and an admin key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingBody {
    #[serde(default)]
    pub state: Option<GapState>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub waiver: Option<RiskWaiver>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskWaiver {
    pub justification: String,
    pub risk: Severity,
    pub expires: DateTime<Utc>,
    #[serde(default)]
    pub ticket: String,
}

/// The gap `id` names, if its framework has that requirement.
fn known(s: &AppState, id: &str) -> Result<(), ApiError> {
    let (fw, req) = tracking::parse_gap_id(id)
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("gap id {id:?}: expected <framework>:<requirement>, e.g. soc2:CC6.1")))?;
    let set = s.policies.borrow().clone();
    if set.requirement_ids(fw).iter().any(|r| r == req) {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no requirement {req:?} in framework {fw:?}")))
    }
}

pub async fn change(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    known(&s, &id)?;
    let body: TrackingBody = serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let by = format!("api:{}", caller.name);
    let now = Utc::now();
    let mut waiver_id = None;
    if body.state == Some(GapState::RiskAccepted) {
        // Accepting a risk exempts a requirement fleet-wide: an approval,
        // like a waiver's.
        if caller.scope < Scope::Admin {
            return Err(ApiError(StatusCode::FORBIDDEN, "accepting a gap's risk approves a waiver: it needs an admin key".into()));
        }
        let w = body.waiver.ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, "risk_accepted: give the waiver that accepts it (justification, risk, expires)".into())
        })?;
        let spec = tracking::risk_waiver(&id, w.justification, caller.name.clone(), w.risk, w.expires, w.ticket);
        let existing = s.waivers.borrow().clone();
        let waiver = crate::waiver::request(spec, "api", by.clone(), &existing, now)
            .map_err(|p| ApiError(StatusCode::BAD_REQUEST, format!("waiver: {}", p.join("; "))))?;
        s.store.put_waiver(&waiver.row(now)).await.map_err(unavailable)?;
        super::waivers::publish(&s, &waiver);
        waiver_id = Some(waiver.spec.id.clone());
    } else if body.waiver.is_some() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "waiver: only with state risk_accepted".into()));
    }
    let events = s.store.gap_events().await.map_err(unavailable)?;
    let current = tracking::latest(&events).remove(&id);
    let change = Change { state: body.state, assignee: body.assignee, note: body.note };
    let row = tracking::change_row(&id, current.as_ref(), change, waiver_id, &by, now).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    s.store.put_gap_event(&row).await.map_err(unavailable)?;
    let detail = format!("gap {id} {} (assignee {:?})", row.state, row.assignee);
    let after = Tracking::of(&row);
    let mut r = (StatusCode::CREATED, Json(after)).into_response();
    if let Ok(v) = detail.parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    Ok(r)
}

pub async fn history(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<Tracking>>, ApiError> {
    known(&s, &id)?;
    let events = s.store.gap_events().await.map_err(unavailable)?;
    Ok(Json(tracking::history(&events, &id)))
}
