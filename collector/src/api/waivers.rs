//! `/api/v1/waivers`: list (with flags), create, revoke — the same waivers
//! as `driftwatch-collector waiver` and the declared ones. A change is
//! stored, recorded in the audit table, and published to the engine at
//! once (the waiver task re-reads the store every `waivers.refresh_secs`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::waiver::{self, RevokeError, Waiver, WaiverSpec, Waivers};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Include revoked and expired waivers.
    #[serde(default)]
    pub all: bool,
}

/// A waiver with its state now.
#[derive(Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub waiver: Waiver,
    /// `in_force`, `pending`, `expired` or `revoked`.
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct List {
    pub waivers: Vec<Listed>,
    /// Waivers that cannot take effect, and why.
    pub flags: Vec<String>,
}

pub async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Json<List> {
    let now = Utc::now();
    let set = s.waivers.borrow().clone();
    let waivers = set
        .list
        .iter()
        .filter(|w| q.all || (w.revoked_at.is_none() && w.spec.expires > now))
        .map(|w| Listed { waiver: w.clone(), state: w.state(now) })
        .collect();
    Json(List { waivers, flags: set.flags.clone() })
}

/// Publishes a changed waiver to the engine without waiting for the next
/// refresh.
pub(super) fn publish(s: &AppState, w: &Waiver) {
    if let Some(tx) = &s.publish_waivers {
        tx.send_modify(|set| {
            let mut next: Waivers = (**set).clone();
            next.list.retain(|x| x.spec.id != w.spec.id);
            next.list.push(w.clone());
            *set = Arc::new(next);
        });
    }
}

fn with_audit(mut r: Response, detail: String) -> Response {
    if let Ok(v) = detail.parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    r
}

pub async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The approver is the admin key that makes the request, not free text.
    let mut doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    if let Some(obj) = doc.as_object_mut() {
        match obj.get("approver").and_then(|a| a.as_str()) {
            None | Some("") => {}
            Some(a) if a == caller.name => {}
            Some(a) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "approver: {a:?} is not this key; the approver is the admin key that approves ({:?}): leave it out",
                        caller.name
                    ),
                ))
            }
        }
        obj.insert("approver".into(), serde_json::Value::String(caller.name.clone()));
    }
    let spec: WaiverSpec = serde_json::from_value(doc).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let existing = s.waivers.borrow().clone();
    let w = waiver::request(spec, "api", format!("api:{}", caller.name), &existing, Utc::now())
        .map_err(|p| ApiError(StatusCode::BAD_REQUEST, p.join("; ")))?;
    s.store.put_waiver(&w.row(Utc::now())).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    publish(&s, &w);
    let detail = format!("waiver {} created for {} until {}", w.spec.id, w.target(), w.spec.expires.to_rfc3339());
    Ok(with_audit((StatusCode::CREATED, Json(&w)).into_response(), detail))
}

pub async fn revoke(State(s): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let existing = s.waivers.borrow().clone();
    let w = waiver::revoke(&existing, &id, format!("api:{}", caller.name), Utc::now()).map_err(|e| match e {
        RevokeError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        _ => ApiError(StatusCode::CONFLICT, e.to_string()),
    })?;
    s.store.put_waiver(&w.row(Utc::now())).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    publish(&s, &w);
    Ok(with_audit(StatusCode::NO_CONTENT.into_response(), format!("waiver {id} revoked")))
}
