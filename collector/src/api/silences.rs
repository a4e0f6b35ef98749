//! `/api/v1/silences`: list, create, expire — the same silences as
//! `driftwatch-collector silence`, stored in ClickHouse and picked up by
//! every collector within `alerts.silence_refresh_secs`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::alert::matcher::Matcher;
use crate::alert::mute::Silence;

/// The body of a new silence. `created_by` is the API key's name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    /// Either `ends_at` or `duration` (e.g. `2h`).
    pub ends_at: Option<DateTime<Utc>>,
    pub duration: Option<String>,
    pub comment: String,
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<Silence>>, ApiError> {
    s.store.silences().await.map(|rows| Json(Silence::from_rows(rows))).map_err(internal)
}

pub async fn create(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewSilence = serde_json::from_slice(&body).map_err(|e| bad(format!("body: {e}")))?;
    if new.matchers.is_empty() {
        return Err(bad("matchers: give at least one (a silence of everything is a maintenance window)".into()));
    }
    let matchers = new
        .matchers
        .iter()
        .enumerate()
        .map(|(i, m)| Matcher::parse(m).map_err(|e| bad(format!("matchers[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if new.comment.trim().is_empty() {
        return Err(bad("comment: say why (a ticket, a change)".into()));
    }
    let starts_at = new.starts_at.unwrap_or_else(Utc::now);
    let ends_at = match (new.ends_at, &new.duration) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d).map_err(|e| bad(format!("duration: {d:?}: {e}")))?;
            starts_at + chrono::Duration::from_std(d).map_err(|e| bad(format!("duration: {e}")))?
        }
        _ => return Err(bad("give exactly one of ends_at and duration".into())),
    };
    if ends_at <= starts_at {
        return Err(bad(format!("ends_at ({ends_at}) is not after starts_at ({starts_at})")));
    }
    let silence =
        Silence { id: uuid::Uuid::now_v7().to_string(), matchers, starts_at, ends_at, created_by: caller.name, comment: new.comment };
    s.store.put_silence(&silence.row(Utc::now())).await.map_err(internal)?;
    let audit = format!("silence {} created: {}", silence.id, silence.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","));
    let mut r = (StatusCode::CREATED, Json(&silence)).into_response();
    if let Ok(v) = audit.parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    Ok(r)
}

pub async fn expire(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let list = Silence::from_rows(s.store.silences().await.map_err(internal)?);
    let Some(mut silence) = list.into_iter().find(|x| x.id == id) else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no active silence {id}")));
    };
    silence.ends_at = Utc::now();
    s.store.put_silence(&silence.row(Utc::now())).await.map_err(internal)?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = format!("silence {id} expired").parse() {
        r.headers_mut().insert("x-driftwatch-audit", v);
    }
    Ok(r)
}
