//! `/api/v1/keys`: agents' keys per asset (read), and an admin's decision
//! on one (`/keys/approve`, `/keys/revoke`), as `driftwatch-collector keys`
//! does. A decision is stored as a new version and recorded in the audit
//! table; the decider is the API key, not free text.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{unavailable, ApiError, AppState};
use crate::identity::{Decision as KeyDecision, KeyStatus};
use crate::store::keys::AssetKeyRow;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub asset: Option<String>,
    /// `pinned`, `pending` or `revoked`.
    pub status: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct List {
    pub keys: Vec<AssetKeyRow>,
}

pub async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<Json<List>, ApiError> {
    if let Some(st) = q.status.as_deref().filter(|st| KeyStatus::parse(st).is_none()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("status: {st:?} is not pinned, pending or revoked")));
    }
    let keys = s.store.asset_keys(q.asset.as_deref()).await.map_err(unavailable)?;
    Ok(Json(List { keys: keys.into_iter().filter(|k| q.status.as_ref().is_none_or(|st| &k.status == st)).collect() }))
}

/// An admin's decision on one key of one asset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub asset_id: String,
    pub fingerprint: String,
    #[serde(default)]
    pub reason: String,
}

pub async fn approve(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    decide(s, caller, body, KeyDecision::Approve).await
}

pub async fn revoke(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    decide(s, caller, body, KeyDecision::Revoke).await
}

async fn decide(s: AppState, caller: Caller, body: axum::body::Bytes, decision: KeyDecision) -> Result<Response, ApiError> {
    let d: Decision = serde_json::from_slice(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
    let keys = s.store.asset_keys(Some(&d.asset_id)).await.map_err(unavailable)?;
    let by = format!("api:{}", caller.name);
    let decided = decision.rows(&keys, &d.asset_id, &d.fingerprint, &by, &d.reason, Utc::now());
    let rows = decided.map_err(|e| ApiError(if e.contains("has no key") { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST }, e))?;
    s.store.put_asset_keys(&rows).await.map_err(unavailable)?;
    let detail = format!(
        "key {} of {} {}d{}",
        d.fingerprint,
        d.asset_id,
        decision.verb(),
        if d.reason.is_empty() { String::new() } else { format!(": {}", d.reason) }
    );
    let mut r = (StatusCode::OK, Json(List { keys: rows })).into_response();
    if let Ok(v) = detail.parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    Ok(r)
}
